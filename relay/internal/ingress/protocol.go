package ingress

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/cloudclient"
	"github.com/gatehouse/gatehouse/relay/internal/sitestate"
	"github.com/gatehouse/gatehouse/relay/internal/spool"
)

// Store is what ingress needs of the spool (*spool.Spool implements it):
// batches and receipts.
type Store interface {
	Submit(ctx context.Context, b *agentv1.EventBatch) (func(context.Context) (spool.Result, error), error)
	PendingReceipts(agentID string) ([]uint64, error)
	AckReceipts(agentID string, seqs []uint64) error
}

// Site is what ingress needs of the site's replicated state
// (*sitestate.State implements it): the agent registry, what offline
// registration checks keys against, and what agents are told.
type Site interface {
	Agent(agentID string) (sitestate.AgentRecord, error)
	PutAgent(rec sitestate.AgentRecord, pending *cloudv1.RegisterAgentRequest) error
	RegistrationKeys() (version uint64, keys []*cloudv1.RegistrationKeyHash)
	GroupTier(groupID string) string
	// Commands is what an agent must still be told (its desired isolation
	// state, then its pending actions), at connect and in every heartbeat reply.
	Commands(agentID string) []*agentv1.Command
	SitePins() []*agentv1.RelayPin
}

// Identity is who the relay is at the cloud (*enrollment.State).
type Identity interface {
	RelayID() string
	TenantID() string
}

// Results takes agents' results of commands (*dispatch.Results); it must
// not block.
type Results interface {
	Report(agentID string, r *agentv1.CommandResult)
}

// Registrar registers agents with the cloud (*cloudclient.Client).
type Registrar interface {
	Register(ctx context.Context, req *cloudv1.RegisterAgentRequest) (*cloudv1.RegisterAgentResponse, error)
}

// handler is the agent protocol on plain byte streams, apart from QUIC, so
// that tests and fuzzers can drive it with raw bytes.
type handler struct {
	store       Store
	site        Site
	id          Identity
	results     Results // nil: results are logged only
	cloud       Registrar
	m           *metrics
	log         *slog.Logger
	now         func() time.Time
	relays      []string
	fingerprint string
	heartbeat   time.Duration
	retryAfter  time.Duration
	maxInflight int
	regTimeout  time.Duration
}

// pendingCommands is what the agent must still be told.
func (h *handler) pendingCommands(agentID string) []*agentv1.Command {
	return h.site.Commands(agentID)
}

// tier is groupID's policy tier, "" when unknown.
func (h *handler) tier(groupID string) string {
	if groupID == "" {
		return ""
	}
	return h.site.GroupTier(groupID)
}

func frame(m any) *agentv1.Frame {
	switch v := m.(type) {
	case *agentv1.HelloReply:
		return &agentv1.Frame{Body: &agentv1.Frame_HelloReply{HelloReply: v}}
	case *agentv1.HeartbeatReply:
		return &agentv1.Frame{Body: &agentv1.Frame_HeartbeatReply{HeartbeatReply: v}}
	case *agentv1.Command:
		return &agentv1.Frame{Body: &agentv1.Frame_Command{Command: v}}
	case *agentv1.BatchAck:
		return &agentv1.Frame{Body: &agentv1.Frame_BatchAck{BatchAck: v}}
	case *agentv1.Delivered:
		return &agentv1.Frame{Body: &agentv1.Frame_Delivered{Delivered: v}}
	case *agentv1.Error:
		return &agentv1.Frame{Body: &agentv1.Frame_Error{Error: v}}
	}
	panic("ingress: no frame for message")
}

// hello reads the Hello on the control stream and admits the agent.
func (h *handler) hello(ctx context.Context, r *framing.Reader, agentID string, pub ed25519.PublicKey) (*agentv1.HelloReply, *connError) {
	f := &agentv1.Frame{}
	if err := r.Next(f); err != nil {
		if errors.Is(err, framing.ErrBadFrame) || errors.Is(err, framing.ErrFrameTooLarge) {
			return nil, frameError(err)
		}
		return nil, failf(agentv1.Error_CODE_PROTOCOL, "no hello: %v", err)
	}
	hello := f.GetHello()
	if hello == nil {
		return nil, failf(agentv1.Error_CODE_PROTOCOL, "first frame must be hello")
	}
	rec, cerr := h.admit(ctx, agentID, pub, hello)
	if cerr != nil {
		return nil, cerr
	}
	pins := h.pins()
	relays := make([]string, 0, len(pins))
	for _, p := range pins {
		relays = append(relays, p.GetAddr())
	}
	return &agentv1.HelloReply{
		AgentId:             agentID,
		TenantId:            rec.TenantID,
		GroupId:             rec.GroupID,
		RelayId:             h.id.RelayID(),
		Relays:              relays,
		RelayPins:           pins,
		HeartbeatIntervalMs: h.heartbeat.Milliseconds(),
		MaxInflightBatches:  uint32(h.maxInflight),
		PolicyTier:          h.tier(rec.GroupID),
	}, nil
}

// pins are the site's relays with their keys: the cluster's members, or
// this relay alone until its membership is recorded.
func (h *handler) pins() []*agentv1.RelayPin {
	if p := h.site.SitePins(); len(p) > 0 {
		return p
	}
	out := make([]*agentv1.RelayPin, 0, len(h.relays))
	for _, a := range h.relays {
		out = append(out, &agentv1.RelayPin{Addr: a, Fingerprint: h.fingerprint})
	}
	return out
}

// admit returns a known agent's record or registers a new one: with the
// cloud when it answers, else offline against the cached key hashes.
func (h *handler) admit(ctx context.Context, agentID string, pub ed25519.PublicKey, hello *agentv1.Hello) (sitestate.AgentRecord, *connError) {
	rec, err := h.site.Agent(agentID)
	if err == nil {
		return rec, nil
	}
	if !errors.Is(err, sitestate.ErrNotFound) {
		h.log.Error("agent registry", "agent_id", agentID, "err", err)
		return rec, failf(agentv1.Error_CODE_UNAVAILABLE, "registry unavailable")
	}
	if hello.GetRegistrationKey() == "" {
		return rec, failf(agentv1.Error_CODE_UNKNOWN_AGENT, "agent %s is not registered and sent no registration key", agentID)
	}
	req := &cloudv1.RegisterAgentRequest{
		AgentId: agentID, PublicKey: pub, RegistrationKey: hello.GetRegistrationKey(),
		Hostname: hello.GetHostname(), AgentVersion: hello.GetAgentVersion(), Os: hello.GetOs(),
	}
	err = errors.New("no cloud client")
	var resp *cloudv1.RegisterAgentResponse
	if h.cloud != nil {
		rctx, cancel := context.WithTimeout(ctx, h.regTimeout)
		resp, err = h.cloud.Register(rctx, req)
		cancel()
	}
	if err == nil {
		rec = sitestate.AgentRecord{AgentID: agentID, TenantID: resp.GetTenantId(), GroupID: resp.GetGroupId(), RegisteredAt: h.now()}
		if err := h.site.PutAgent(rec, nil); err != nil {
			h.log.Error("store agent", "agent_id", agentID, "err", err)
			return rec, failf(agentv1.Error_CODE_UNAVAILABLE, "registry unavailable")
		}
		h.m.registrations.WithLabelValues("cloud").Inc()
		h.log.Info("agent registered", "agent_id", agentID, "hostname", hello.GetHostname(), "tenant_id", rec.TenantID, "group_id", rec.GroupID)
		return rec, nil
	}
	var se *cloudclient.StatusError
	if errors.As(err, &se) && !cloudclient.Unreachable(err) {
		switch {
		case se.Code == cloudv1.Status_CODE_KEY_EXPIRED:
			return rec, failf(agentv1.Error_CODE_KEY_EXPIRED, "registration key expired")
		case se.Code == cloudv1.Status_CODE_KEY_INVALID, se.HTTPStatus == 403:
			return rec, failf(agentv1.Error_CODE_KEY_INVALID, "registration key invalid")
		case se.HTTPStatus == 429:
			return rec, failf(agentv1.Error_CODE_UNAVAILABLE, "cloud busy, retry later")
		default:
			h.log.Error("cloud refused registration", "agent_id", agentID, "err", err)
			return rec, failf(agentv1.Error_CODE_UNAVAILABLE, "registration failed")
		}
	}
	h.log.Warn("cloud unreachable, registering agent offline", "agent_id", agentID, "err", err)
	return h.admitOffline(agentID, req)
}

// admitOffline checks the key against the hashes from the last control
// poll and registers the agent locally, pending reconcile by the uplink.
func (h *handler) admitOffline(agentID string, req *cloudv1.RegisterAgentRequest) (sitestate.AgentRecord, *connError) {
	version, keys := h.site.RegistrationKeys()
	if version == 0 {
		// Never polled the cloud (not enrolled yet, or the cloud never
		// reached): the key may well be good, so "try again", not "invalid".
		return sitestate.AgentRecord{}, failf(agentv1.Error_CODE_UNAVAILABLE, "relay cannot check registration keys yet (cloud not reached since it started); retry later")
	}
	sum := sha256.Sum256([]byte(req.RegistrationKey))
	var match *cloudv1.RegistrationKeyHash
	for _, k := range keys {
		if subtle.ConstantTimeCompare(k.GetSha256(), sum[:]) == 1 {
			match = k
			break
		}
	}
	if match == nil || (h.id.TenantID() != "" && match.GetTenantId() != h.id.TenantID()) {
		return sitestate.AgentRecord{}, failf(agentv1.Error_CODE_KEY_INVALID, "registration key invalid")
	}
	if exp := match.GetExpiresUnixMs(); exp != 0 && h.now().UnixMilli() >= exp {
		return sitestate.AgentRecord{}, failf(agentv1.Error_CODE_KEY_EXPIRED, "registration key expired")
	}
	rec := sitestate.AgentRecord{AgentID: agentID, TenantID: match.GetTenantId(), GroupID: match.GetGroupId(), RegisteredAt: h.now(), Pending: true}
	if err := h.site.PutAgent(rec, req); err != nil {
		h.log.Error("store agent", "agent_id", agentID, "err", err)
		return rec, failf(agentv1.Error_CODE_UNAVAILABLE, "registry unavailable")
	}
	h.m.registrations.WithLabelValues("offline").Inc()
	h.log.Info("agent registered offline, pending cloud reconcile", "agent_id", agentID, "tenant_id", rec.TenantID, "group_id", rec.GroupID)
	return rec, nil
}

// control serves the control stream after the hello until it ends.
// groupID is the agent's group (HeartbeatReply.policy_tier).
func (h *handler) control(ctx context.Context, agentID, groupID string, r *framing.Reader, send func(*agentv1.Frame) error) *connError {
	for {
		f := &agentv1.Frame{}
		if err := r.Next(f); err != nil {
			// framing reports only hostile bytes as such; EOF, a reset or a
			// closed connection just end the stream.
			if errors.Is(err, framing.ErrBadFrame) || errors.Is(err, framing.ErrFrameTooLarge) {
				return frameError(err)
			}
			return nil
		}
		switch b := f.Body.(type) {
		case *agentv1.Frame_Heartbeat:
			if err := send(frame(&agentv1.HeartbeatReply{RelayPins: h.pins(), PolicyTier: h.tier(groupID), Commands: h.pendingCommands(agentID)})); err != nil {
				return nil
			}
		case *agentv1.Frame_ReceiptAck:
			if err := h.store.AckReceipts(agentID, b.ReceiptAck.GetSeqs()); err != nil {
				h.log.Error("receipt ack", "agent_id", agentID, "err", err)
			}
		case *agentv1.Frame_CommandResult:
			cr := b.CommandResult
			h.log.Info("command result", "agent_id", agentID, "command_id", cr.GetId(), "ok", cr.GetOk(), "reason", cr.GetReason(), "output_bytes", len(cr.GetOutput()))
			if h.results != nil {
				h.results.Report(agentID, cr)
			}
		default:
			return failf(agentv1.Error_CODE_PROTOCOL, "unexpected %T on control stream", f.Body)
		}
	}
}

type laneAck struct {
	ack *agentv1.BatchAck
	err error
}

// lane serves one lane stream: EventBatch in, BatchAck out in the same
// order. Up to maxInflight appends run at once so a lane keeps the group
// committer fed.
// abort, if not nil, is called when acks can no longer be sent, to unblock
// the reader.
func (h *handler) lane(ctx context.Context, agentID string, rd io.Reader, w io.Writer, abort func()) *connError {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if abort != nil {
		stop := context.AfterFunc(ctx, abort)
		defer stop()
	}
	r := framing.NewReader(rd, 0)
	queue := make(chan chan laneAck, h.maxInflight)
	var wg sync.WaitGroup
	var werr *connError
	wg.Add(1)
	go func() {
		defer wg.Done()
		for done := range queue {
			res := <-done
			if werr != nil {
				continue
			}
			if res.err != nil {
				if ctx.Err() == nil {
					h.log.Error("spool append", "agent_id", agentID, "err", res.err)
				}
				werr = failf(agentv1.Error_CODE_UNAVAILABLE, "spool unavailable")
				cancel()
				continue
			}
			if err := framing.Write(w, frame(res.ack)); err != nil {
				werr = &connError{} // stream gone: nothing to tell
				cancel()
			}
		}
	}()
	var rerr *connError
	for ctx.Err() == nil {
		f := &agentv1.Frame{}
		if err := r.Next(f); err != nil {
			if errors.Is(err, framing.ErrBadFrame) || errors.Is(err, framing.ErrFrameTooLarge) {
				rerr = frameError(err)
			}
			break
		}
		eb := f.GetEventBatch()
		if eb == nil {
			rerr = failf(agentv1.Error_CODE_PROTOCOL, "unexpected %T on lane stream", f.Body)
			break
		}
		done := make(chan laneAck, 1)
		start := time.Now()
		if why := validate(agentID, eb); why != "" {
			h.m.batches.WithLabelValues("rejected").Inc()
			h.m.rejects.WithLabelValues("batch_" + why).Inc()
			h.log.Warn("batch rejected", "agent_id", agentID, "seq", eb.GetSeq(), "reason", why)
			done <- laneAck{ack: &agentv1.BatchAck{Seq: eb.GetSeq(), Status: agentv1.BatchAck_STATUS_REJECTED, Reason: why}}
		} else if wait, err := h.store.Submit(ctx, eb); err != nil {
			done <- laneAck{err: err}
		} else {
			go func() {
				res, err := wait(ctx)
				done <- laneAck{ack: h.ackFor(eb, res, start), err: err}
			}()
		}
		select {
		case queue <- done:
		case <-ctx.Done():
		}
	}
	close(queue)
	wg.Wait()
	if rerr != nil {
		return rerr
	}
	if werr != nil && werr.code != 0 {
		return werr
	}
	return nil
}

func (h *handler) ackFor(eb *agentv1.EventBatch, res spool.Result, start time.Time) *agentv1.BatchAck {
	ack := &agentv1.BatchAck{Seq: eb.GetSeq()}
	switch res {
	case spool.Spooled:
		ack.Status = agentv1.BatchAck_STATUS_SPOOLED
		n := 0
		for _, e := range eb.GetEvents() {
			n += len(e)
		}
		h.m.bytesIn.Add(float64(n))
		h.m.batches.WithLabelValues("spooled").Inc()
	case spool.Duplicate:
		ack.Status = agentv1.BatchAck_STATUS_DUPLICATE
		h.m.batches.WithLabelValues("duplicate").Inc()
	case spool.Full:
		ack.Status = agentv1.BatchAck_STATUS_SPOOL_FULL
		ack.RetryAfterMs = h.retryAfter.Milliseconds()
		h.m.batches.WithLabelValues("full").Inc()
	default:
		return nil
	}
	h.m.ackSeconds.Observe(time.Since(start).Seconds())
	return ack
}

// validate returns why a batch is rejected, or "".
func validate(agentID string, eb *agentv1.EventBatch) string {
	switch {
	case eb.GetAgentId() != agentID:
		return "agent_id_mismatch"
	case eb.GetSeq() == 0:
		return "seq_zero"
	case eb.GetPriority() > agentv1.Priority_PRIORITY_FILE || eb.GetPriority() < 0:
		return "bad_priority"
	case len(eb.GetEvents()) == 0:
		return "no_events"
	}
	return ""
}
