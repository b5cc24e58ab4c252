// Package uplink moves spooled batches to the cloud, oldest first, in
// coalesced zstd uploads, deleting them only on the cloud's ack; it also
// enrolls the relay, keeps the control long-poll (registration key hashes)
// and registers agents that were registered offline.
package uplink

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/cloudclient"
	"github.com/gatehouse/gatehouse/relay/internal/enrollment"
	"github.com/gatehouse/gatehouse/relay/internal/spool"
)

// Options configure an Uplink.
type Options struct {
	DataDir         string // where enrollment.pb lives
	EnrollmentToken string
	// Key is the relay's identity key, proved at enrollment so that the
	// same relay may present a used token again; nil: no proof.
	Key            ed25519.PrivateKey
	Name           string // relay name sent at enrollment
	MaxUploadBytes int
	MaxUploadAge   time.Duration
	MinBackoff     time.Duration
	MaxBackoff     time.Duration
	PollWait       time.Duration // long-poll wait asked of the cloud; default 25s
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
	Clock          clockwork.Clock
}

// Site is what the uplink needs of the site's replicated state
// (*sitestate.State): where each control poll's state goes, and the
// offline registrations to tell the cloud.
type Site interface {
	// ControlVersion is the version of the last control state applied.
	ControlVersion() uint64
	// ApplyControl stores the cloud's whole control state; an error (no
	// quorum) makes the next poll bring it again.
	ApplyControl(ctx context.Context, resp *cloudv1.ControlPollResponse) error
	PendingRegistrations() []*cloudv1.RegisterAgentRequest
	// ReconcileDone records the cloud's answer; resp nil: it refused.
	ReconcileDone(ctx context.Context, agentID string, resp *cloudv1.RegisterAgentResponse) error
}

// Receipts takes the receipts of every acked upload (*ingress.Server pushes
// them to the agents connected here); it must not block.
type Receipts interface {
	Delivered(agentID string, seqs []uint64)
}

// Deps are the components the uplink works with.
type Deps struct {
	Spool    *spool.Spool
	Client   *cloudclient.Client
	Site     Site
	Receipts Receipts          // nil: receipts wait for the agents' next connect
	Enrolled *enrollment.State // set once the relay has credentials
}

// Status is what /v1/status shows of the uplink.
type Status struct {
	UploadedBatches int64  `json:"uploaded_batches"`
	LastError       string `json:"last_error"`
	// CloudReachable: the cloud answered recently (within ReachableWindow)
	// and no call failed to reach it since.
	CloudReachable bool `json:"cloud_reachable"`
	// LastContact is when the cloud last answered a call; zero: never
	// since the relay started.
	LastContact time.Time `json:"last_contact,omitzero"`
	// LastErrorAt is when LastError happened.
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Uplink is the spool -> cloud mover. New starts nothing; Run does.
type Uplink struct {
	o   Options
	log *slog.Logger
	m   *metrics

	d Deps

	uploaded atomic.Int64

	mu          sync.Mutex
	lastErr     string
	lastErrAt   time.Time
	lastContact time.Time // the cloud answered (success or a verdict)
	lastLost    time.Time // a call could not reach the cloud
}

// New checks options and builds an Uplink.
func New(o Options, d Deps) *Uplink {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.MaxUploadBytes <= 0 {
		o.MaxUploadBytes = 4 << 20
	}
	if o.MaxUploadAge <= 0 {
		o.MaxUploadAge = time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = 30 * time.Second
	}
	if o.PollWait <= 0 {
		o.PollWait = 25 * time.Second
	}
	if d.Enrolled == nil {
		d.Enrolled = enrollment.New()
	}
	u := &Uplink{o: o, d: d, log: o.Logger.With("component", "uplink")}
	u.m = newMetrics(o.Registerer, u.reachableNow, u.lastContactAt)
	return u
}

// ReachableWindow is how recent the cloud's last answer must be for the
// cloud to count as reachable: two long polls, so a healthy relay (which
// polls without pause) never drops out between answers.
func (u *Uplink) ReachableWindow() time.Duration { return 2 * u.o.PollWait }

// Status returns the uplink's state.
func (u *Uplink) Status() Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	return Status{
		UploadedBatches: u.uploaded.Load(), LastError: u.lastErr, CloudReachable: u.reachableLocked(u.o.Clock.Now()),
		LastContact: u.lastContact, LastErrorAt: u.lastErrAt,
	}
}

// Unreachable returns nil while the cloud is reachable, or why it is not,
// for /readyz.
func (u *Uplink) Unreachable() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.o.Clock.Now()
	switch {
	case u.reachableLocked(now):
		return nil
	case u.lastContact.IsZero() && u.lastErr == "":
		return errors.New("cloud not reached yet since start")
	case u.lastContact.IsZero():
		return fmt.Errorf("cloud not reached since start: %s", u.lastErr)
	case u.lastErr != "" && !u.lastLost.Before(u.lastContact):
		return fmt.Errorf("cloud unreachable since %s (last answer %s ago): %s",
			u.lastLost.UTC().Format(time.RFC3339), now.Sub(u.lastContact).Round(time.Second), u.lastErr)
	default:
		return fmt.Errorf("cloud silent: no answer for %s (more than %s)", now.Sub(u.lastContact).Round(time.Second), u.ReachableWindow())
	}
}

func (u *Uplink) reachableNow() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.reachableLocked(u.o.Clock.Now())
}

func (u *Uplink) lastContactAt() time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lastContact
}

// reachableLocked: the cloud answered within the window and nothing failed
// to reach it since. A success long ago says nothing about the path now.
func (u *Uplink) reachableLocked(now time.Time) bool {
	return !u.lastContact.IsZero() && !u.lastContact.Before(u.lastLost) && now.Sub(u.lastContact) <= u.ReachableWindow()
}

// Run enrolls if needed, then uploads and polls until ctx ends.
func (u *Uplink) Run(ctx context.Context) error {
	if err := u.ensureEnrolled(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		u.pollLoop(ctx)
	}()
	u.uploadLoop(ctx)
	wg.Wait()
	return nil
}

// ensureEnrolled loads enrollment.pb or enrolls, retrying while the cloud
// is unreachable. A refused token is fatal: retrying will not help.
func (u *Uplink) ensureEnrolled(ctx context.Context) error {
	host, _ := os.Hostname()
	bo := backoff{min: u.o.MinBackoff, max: u.o.MaxBackoff}
	for {
		e, enrolled, err := u.d.Client.EnsureEnrolled(ctx, u.o.DataDir, u.o.EnrollmentToken, u.o.Key,
			&cloudv1.EnrollRequest{RelayName: u.o.Name, Hostname: host})
		if err == nil {
			u.d.Enrolled.Set(e)
			if enrolled {
				u.log.Info("relay enrolled", "relay_id", e.RelayId, "tenant_id", e.TenantId, "site_id", e.SiteId)
			} else {
				u.log.Info("loaded relay credentials for site "+e.SiteId, "relay_id", e.RelayId, "tenant_id", e.TenantId, "site_id", e.SiteId)
			}
			u.callResult(nil)
			return nil
		}
		u.callResult(err)
		var se *cloudclient.StatusError
		if !cloudclient.Retryable(err) || (errors.As(err, &se) && se.HTTPStatus < 500 && se.HTTPStatus != 429) {
			return fmt.Errorf("relay enrollment: %w", err)
		}
		d := max(bo.next(), cloudclient.RetryAfter(err))
		u.log.Warn("enrollment failed, retrying", "err", err, "retry_in", d)
		if !u.sleep(ctx, d) {
			return ctx.Err()
		}
	}
}

// callResult records the outcome of a cloud call for status and metrics:
// a success or a verdict (4xx) is contact with the cloud; a network error or
// a 5xx is not.
func (u *Uplink) callResult(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.o.Clock.Now()
	lost := !u.lastContact.IsZero() && u.lastLost.After(u.lastContact)
	if err == nil || !cloudclient.Unreachable(err) {
		if lost {
			// One line for the operator when an outage ends; its start is
			// the first "failed" warning.
			u.log.Info("cloud reachable again", "last_answer_before", u.lastContact.UTC().Format(time.RFC3339), "unreachable_for", now.Sub(u.lastContact).Round(time.Second))
		}
		u.lastContact = now
		if err == nil {
			u.lastErr = ""
			return
		}
	} else {
		u.lastLost = now
	}
	u.lastErr, u.lastErrAt = err.Error(), now
}

func (u *Uplink) sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-u.o.Clock.After(d):
		return true
	}
}

// uploadLoop: wait for data, let a partial upload fill for up to
// MaxUploadAge (security batches go at once), register offline-registered
// agents, then upload and retry the same upload until the cloud acks it.
func (u *Uplink) uploadLoop(ctx context.Context) {
	bo := backoff{min: u.o.MinBackoff, max: u.o.MaxBackoff}
	for ctx.Err() == nil {
		items, err := u.collect(ctx)
		if err != nil {
			u.log.Error("read spool", "err", err)
			if !u.sleep(ctx, u.o.MaxBackoff) {
				return
			}
			continue
		}
		if len(items) == 0 {
			return // ctx ended
		}
		if err := u.reconcile(ctx); err != nil {
			d := max(bo.next(), cloudclient.RetryAfter(err))
			u.m.backoff.Set(d.Seconds())
			u.log.Warn("agent registration reconcile failed, uploads wait", "err", err, "retry_in", d)
			if !u.sleep(ctx, d) {
				return
			}
			continue
		}
		req := &cloudv1.UploadRequest{UploadId: newUploadID(), Batches: make([]*agentv1.EventBatch, len(items))}
		for i, it := range items {
			req.Batches[i] = it.Batch
		}
		ack := u.uploadWithRetry(ctx, req, &bo)
		if ack == nil {
			return // ctx ended
		}
		u.finish(items, ack)
	}
}

// collect returns the next upload's items, waiting for data and for a
// partial upload to fill. It returns nil when ctx ends.
func (u *Uplink) collect(ctx context.Context) ([]spool.Item, error) {
	sp := u.d.Spool
	var deadline <-chan time.Time
	for {
		if sp.Stats().Batches > 0 {
			items, err := sp.Peek(u.o.MaxUploadBytes)
			if err != nil {
				return nil, err
			}
			size := 0
			for _, it := range items {
				size += it.Size
			}
			urgent := len(items) > 0 && items[0].Batch.GetPriority() == agentv1.Priority_PRIORITY_SECURITY
			if len(items) > 0 && (urgent || size >= u.o.MaxUploadBytes || len(items) < int(sp.Stats().Batches)) {
				return items, nil
			}
			if len(items) > 0 && deadline == nil {
				deadline = u.o.Clock.After(u.o.MaxUploadAge)
			}
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-sp.NewData():
		case <-deadline:
			items, err := sp.Peek(u.o.MaxUploadBytes)
			if err != nil || len(items) > 0 {
				return items, err
			}
			deadline = nil
		}
	}
}

func (u *Uplink) uploadWithRetry(ctx context.Context, req *cloudv1.UploadRequest, bo *backoff) *cloudv1.UploadAck {
	for {
		ack, sizes, err := u.d.Client.Upload(ctx, req)
		u.callResult(err)
		if err == nil {
			bo.reset()
			u.m.backoff.Set(0)
			u.m.uploads.WithLabelValues("ok").Inc()
			u.m.uploadBytes.WithLabelValues("raw").Add(float64(sizes.Raw))
			u.m.uploadBytes.WithLabelValues("compressed").Add(float64(sizes.Compressed))
			u.log.Debug("uploaded", "upload_id", req.UploadId, "batches", len(req.Batches),
				"raw_bytes", sizes.Raw, "zstd_bytes", sizes.Compressed, "accepted", ack.Accepted, "duplicates", ack.Duplicates)
			return ack
		}
		if ctx.Err() != nil {
			return nil
		}
		u.m.uploads.WithLabelValues("error").Inc()
		d := max(bo.next(), cloudclient.RetryAfter(err))
		u.m.backoff.Set(d.Seconds())
		u.log.Warn("upload failed, retrying the same upload", "upload_id", req.UploadId, "batches", len(req.Batches), "err", err, "retry_in", d)
		if !u.sleep(ctx, d) {
			return nil
		}
	}
}

// finish deletes acked batches with their receipts and tells the agents.
func (u *Uplink) finish(items []spool.Item, ack *cloudv1.UploadAck) {
	for _, r := range ack.GetRejected() {
		u.log.Warn("cloud rejected batch, dropping it", "agent_id", r.AgentId, "seq", r.Seq, "reason", r.Reason)
	}
	u.m.rejected.Add(float64(len(ack.GetRejected())))
	u.m.batches.WithLabelValues("accepted").Add(float64(ack.GetAccepted()))
	u.m.batches.WithLabelValues("duplicate").Add(float64(ack.GetDuplicates()))
	u.m.batches.WithLabelValues("rejected").Add(float64(len(ack.GetRejected())))
	receipts, err := u.d.Spool.Complete(items)
	if err != nil {
		// The batches stay spooled and will be uploaded again: the cloud
		// dedups them, so nothing is lost or counted twice.
		u.log.Error("complete upload", "err", err)
		return
	}
	u.uploaded.Add(int64(len(items)))
	for agent, seqs := range receipts {
		if u.d.Receipts != nil {
			u.d.Receipts.Delivered(agent, seqs)
		}
	}
}

func newUploadID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
