// Package relayapi serves the HTTPS API relays call (docs/design.md, "Relay
// <-> cloud"): enroll, register agents, upload event batches, and poll for
// control state. Bodies are protobuf; errors answer a cloudv1.Status.
package relayapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/cloud/internal/store"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

const contentType = "application/x-protobuf"

// Defaults for Config.
const (
	DefaultMaxBodyBytes         = 32 << 20
	DefaultMaxDecompressedBytes = 64 << 20
	DefaultMaxPollWait          = 55 * time.Second
	maxSmallBody                = 64 << 10 // enroll, register, poll
	maxResultsPerCall           = 10000
)

// Config of the relay API.
type Config struct {
	Store   *store.Store
	Logger  *slog.Logger
	Metrics *Metrics
	// MaxBodyBytes bounds an upload body as sent (compressed).
	MaxBodyBytes int64
	// MaxDecompressedBytes bounds an upload body after zstd.
	MaxDecompressedBytes int64
	// MaxPollWait caps a control poll's wait_ms.
	MaxPollWait time.Duration
}

// API is the relay API handler.
type API struct {
	cfg Config
	log *slog.Logger
	dec *Decoder
	mux *http.ServeMux
}

// New builds the handler.
func New(cfg Config) (*API, error) {
	if cfg.Store == nil {
		return nil, errors.New("relayapi: nil store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxDecompressedBytes <= 0 {
		cfg.MaxDecompressedBytes = DefaultMaxDecompressedBytes
	}
	if cfg.MaxPollWait <= 0 {
		cfg.MaxPollWait = DefaultMaxPollWait
	}
	dec, err := NewDecoder(cfg.MaxDecompressedBytes)
	if err != nil {
		return nil, err
	}
	a := &API{cfg: cfg, log: cfg.Logger, dec: dec, mux: http.NewServeMux()}
	a.mux.HandleFunc("POST /v1/relay/enroll", a.wrap(a.enroll, false))
	a.mux.HandleFunc("POST /v1/agents/register", a.wrap(a.register, true))
	a.mux.HandleFunc("POST /v1/ingest/upload", a.wrap(a.upload, true))
	a.mux.HandleFunc("POST /v1/control/poll", a.wrap(a.poll, true))
	a.mux.HandleFunc("POST /v1/control/results", a.wrap(a.results, true))
	return a, nil
}

// Close releases the decoder.
func (a *API) Close() { a.dec.Close() }

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

type handlerFunc func(ctx context.Context, relay store.Relay, r *http.Request, body []byte) (proto.Message, error)

// wrap authenticates (when auth), reads the bounded body, calls h and writes
// its answer or error.
func (a *API) wrap(h handlerFunc, auth bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		resp, err := a.serve(h, auth, w, r)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		b, err := proto.Marshal(resp)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.Write(b)
	}
}

func (a *API) serve(h handlerFunc, auth bool, w http.ResponseWriter, r *http.Request) (proto.Message, error) {
	var relay store.Relay
	if auth {
		cred, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			return nil, errUnauthorized
		}
		var err error
		if relay, err = a.cfg.Store.AuthenticateRelay(cred); err != nil {
			return nil, err
		}
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != contentType {
		return nil, fmt.Errorf("%w %q, want %s", errMethodOrMedia, ct, contentType)
	}
	limit := int64(maxSmallBody)
	if r.URL.Path == "/v1/ingest/upload" || r.URL.Path == "/v1/control/results" {
		limit = a.cfg.MaxBodyBytes
	} else if ce := r.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return nil, fmt.Errorf("%w %q", errBadEncoding, ce)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, fmt.Errorf("%w: body over %d bytes", errTooLarge, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read body: %v", errBadRequest, err)
	}
	return h(r.Context(), relay, r, body)
}

func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code, sc := statusOf(err)
	a.cfg.Metrics.RequestErrors.WithLabelValues(r.URL.Path, strconv.Itoa(code)).Inc()
	msg := err.Error()
	switch {
	case errors.Is(err, errPollEnded):
		a.log.Info("relay api: long poll ended", "path", r.URL.Path, "remote", r.RemoteAddr, "status", code, "err", err)
	case code >= 500:
		a.log.Error("relay api", "path", r.URL.Path, "remote", r.RemoteAddr, "status", code, "err", err)
		msg = "internal error"
	default:
		a.log.Info("relay api refused", "path", r.URL.Path, "remote", r.RemoteAddr, "status", code, "err", err)
	}
	b, _ := proto.Marshal(&cloudv1.Status{Code: sc, Message: msg})
	w.Header().Set("Content-Type", contentType)
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	w.WriteHeader(code)
	w.Write(b)
}

func (a *API) enroll(_ context.Context, _ store.Relay, _ *http.Request, body []byte) (proto.Message, error) {
	var req cloudv1.EnrollRequest
	if err := Message(body, &req); err != nil {
		return nil, err
	}
	if req.EnrollmentToken == "" {
		return nil, fmt.Errorf("%w: enrollment_token is required", errBadRequest)
	}
	if err := cloudv1.VerifyEnrollment(&req); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	e, err := a.cfg.Store.EnrollRelay(req.EnrollmentToken, req.RelayName, req.Hostname, req.RelayPublicKey)
	if err != nil {
		return nil, err
	}
	relay := e.Relay
	msg := "relay enrolled"
	if e.Again {
		msg = "relay enrolled again (same relay key; its secret is replaced)"
	}
	a.log.Info(msg, "relay", relay.ID, "tenant", relay.TenantID, "site", relay.SiteID, "name", relay.Name, "hostname", relay.Hostname)
	return &cloudv1.EnrollResponse{RelayId: relay.ID, TenantId: relay.TenantID, SiteId: relay.SiteID, RelaySecret: e.Secret}, nil
}

func (a *API) register(_ context.Context, relay store.Relay, _ *http.Request, body []byte) (proto.Message, error) {
	var req cloudv1.RegisterAgentRequest
	if err := Message(body, &req); err != nil {
		return nil, err
	}
	ag, err := a.cfg.Store.RegisterAgent(relay, store.Registration{
		AgentID: req.AgentId, PublicKey: req.PublicKey, RegistrationKey: req.RegistrationKey,
		Hostname: req.Hostname, AgentVersion: req.AgentVersion, OS: req.Os,
	})
	if err != nil {
		return nil, err
	}
	return &cloudv1.RegisterAgentResponse{AgentId: ag.ID, TenantId: ag.TenantID, GroupId: ag.GroupID}, nil
}

func (a *API) upload(_ context.Context, relay store.Relay, r *http.Request, body []byte) (proto.Message, error) {
	a.cfg.Metrics.UploadBytes.Add(float64(len(body)))
	req, err := a.dec.Upload(body, r.Header.Get("Content-Encoding"))
	if err != nil {
		return nil, err
	}
	res, err := a.cfg.Store.Upload(relay.TenantID, req.Batches)
	if err != nil {
		return nil, err
	}
	m := a.cfg.Metrics
	m.Uploads.Inc()
	m.Batches.WithLabelValues("accepted").Add(float64(res.Accepted))
	m.Batches.WithLabelValues("duplicate").Add(float64(res.Duplicates))
	m.Batches.WithLabelValues("rejected").Add(float64(len(res.Rejected)))
	m.Events.Add(float64(res.Events))
	ack := &cloudv1.UploadAck{UploadId: req.UploadId, Accepted: uint32(res.Accepted), Duplicates: uint32(res.Duplicates)}
	for _, rj := range res.Rejected {
		ack.Rejected = append(ack.Rejected, &cloudv1.RejectedBatch{AgentId: rj.AgentID, Seq: rj.Seq, Reason: rj.Reason})
	}
	if len(res.Rejected) > 0 {
		a.log.Info("upload batches rejected", "relay", relay.ID, "upload", req.UploadId, "rejected", len(res.Rejected), "first_reason", res.Rejected[0].Reason)
	}
	return ack, nil
}

func (a *API) poll(ctx context.Context, relay store.Relay, _ *http.Request, body []byte) (proto.Message, error) {
	var req cloudv1.ControlPollRequest
	if err := Message(body, &req); err != nil {
		return nil, err
	}
	wait := min(time.Duration(max(req.WaitMs, 0))*time.Millisecond, a.cfg.MaxPollWait)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		changed := a.cfg.Store.ControlChanged()
		cs, err := a.cfg.Store.Control(relay.TenantID, relay.SiteID)
		if err != nil {
			return nil, err
		}
		if cs.Version == req.SinceVersion {
			select {
			case <-changed:
				continue
			case <-timer.C:
			case <-ctx.Done():
				return nil, errPollEnded
			}
		}
		resp := controlResponse(cs, a.log)
		ids := make([]string, 0, len(cs.Actions))
		for _, ac := range cs.Actions {
			if ac.State == store.ActionPending {
				ids = append(ids, ac.ID)
			}
		}
		// Best effort: the state is informational, the relay has the list.
		if err := a.cfg.Store.MarkDelivered(relay, ids); err != nil {
			a.log.Warn("mark actions delivered", "relay", relay.ID, "err", err)
		}
		a.cfg.Metrics.ActionsDelivered.Add(float64(len(ids)))
		return resp, nil
	}
}

// controlResponse turns the store's control state into the wire answer.
func controlResponse(cs store.ControlState, log *slog.Logger) *cloudv1.ControlPollResponse {
	resp := &cloudv1.ControlPollResponse{
		Version:   cs.Version,
		AllowList: &cloudv1.AllowList{Cidrs: cs.AllowList.CIDRs, Names: cs.AllowList.Names},
	}
	for _, k := range cs.Keys {
		resp.RegistrationKeys = append(resp.RegistrationKeys, &cloudv1.RegistrationKeyHash{
			KeyId: k.ID, Sha256: k.SHA256, TenantId: k.TenantID, GroupId: k.GroupID,
			ExpiresUnixMs: k.ExpiresAt.UnixMilli(),
		})
	}
	for _, r := range cs.DNS {
		resp.DnsOverrides = append(resp.DnsOverrides, &cloudv1.DnsOverride{
			Name: r.Name, Type: dnsType[r.Type], Values: r.Values, TtlSeconds: r.TTL,
		})
	}
	for _, g := range cs.Groups {
		resp.GroupPolicies = append(resp.GroupPolicies, &cloudv1.GroupPolicy{GroupId: g.ID, Tier: g.Tier})
	}
	for _, i := range cs.Isolation {
		resp.Isolation = append(resp.Isolation, &cloudv1.AgentIsolation{
			AgentId: i.AgentID, Isolated: i.Isolated, UpdatedUnixMs: i.UpdatedAt.UnixMilli(),
		})
	}
	for _, ac := range cs.Actions {
		// Stored actions passed the same check when created; one that no
		// longer does (a stricter rule since) is not sent rather than sent
		// for the agent to refuse.
		typed, err := store.ParseAction(ac.Type, ac.Payload)
		if err != nil {
			log.Error("stored action is invalid: not delivered", "action_id", ac.ID, "err", err)
			continue
		}
		resp.Actions = append(resp.Actions, &cloudv1.PendingAction{
			ActionId: ac.ID, AgentId: ac.AgentID, Action: typed,
			CreatedUnixMs: ac.CreatedAt.UnixMilli(),
		})
	}
	return resp
}

var dnsType = map[string]cloudv1.DnsType{
	"A": cloudv1.DnsType_DNS_TYPE_A, "AAAA": cloudv1.DnsType_DNS_TYPE_AAAA, "CNAME": cloudv1.DnsType_DNS_TYPE_CNAME,
	"SRV": cloudv1.DnsType_DNS_TYPE_SRV, "TXT": cloudv1.DnsType_DNS_TYPE_TXT,
}

func (a *API) results(_ context.Context, relay store.Relay, r *http.Request, body []byte) (proto.Message, error) {
	req, err := a.dec.Results(body, r.Header.Get("Content-Encoding"))
	if err != nil {
		return nil, err
	}
	if len(req.Results) > maxResultsPerCall {
		return nil, fmt.Errorf("%w: %d results, at most %d per call", errBadRequest, len(req.Results), maxResultsPerCall)
	}
	in := make([]store.ResultInput, len(req.Results))
	for i, res := range req.Results {
		in[i] = store.ResultInput{ActionID: res.ActionId, AgentID: res.AgentId, OK: res.Ok, Reason: res.Reason, Output: res.Output}
	}
	accepted, rejected, err := a.cfg.Store.RecordResults(relay, in)
	if err != nil {
		return nil, err
	}
	a.cfg.Metrics.ActionResults.WithLabelValues("accepted").Add(float64(accepted))
	a.cfg.Metrics.ActionResults.WithLabelValues("rejected").Add(float64(len(rejected)))
	ack := &cloudv1.ActionResultsAck{Accepted: uint32(accepted)}
	for _, rj := range rejected {
		ack.Rejected = append(ack.Rejected, &cloudv1.RejectedResult{ActionId: rj.ActionID, Reason: rj.Reason})
	}
	if len(rejected) > 0 {
		a.log.Info("action results rejected", "relay", relay.ID, "rejected", len(rejected), "first", rejected[0].ActionID, "reason", rejected[0].Reason)
	}
	return ack, nil
}
