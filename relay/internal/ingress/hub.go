package ingress

import (
	"errors"
	"log/slog"
	"net/netip"
	"sync"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

var errQueueFull = errors.New("control queue full")

// maxReceiptsPerFrame keeps a Delivered frame far below MaxFrameSize.
const maxReceiptsPerFrame = 50000

// hub maps connected agents to their sessions, for receipt pushes.
type hub struct {
	m   *metrics
	log *slog.Logger
	mu  sync.Mutex
	by  map[string]*session
}

func newHub(m *metrics, log *slog.Logger) *hub {
	return &hub{m: m, log: log, by: make(map[string]*session)}
}

// add makes sess the agent's current session (a reconnect replaces the old).
func (h *hub) add(sess *session) {
	h.mu.Lock()
	h.by[sess.agentID] = sess
	h.mu.Unlock()
}

func (h *hub) remove(sess *session) {
	h.mu.Lock()
	if h.by[sess.agentID] == sess {
		delete(h.by, sess.agentID)
	}
	h.mu.Unlock()
}

// deliver queues Delivered frames for a connected agent; otherwise the
// durable receipts wait for its next connect.
func (h *hub) deliver(agentID string, seqs []uint64) {
	h.mu.Lock()
	sess := h.by[agentID]
	h.mu.Unlock()
	if sess == nil {
		return
	}
	for len(seqs) > 0 {
		n := min(len(seqs), maxReceiptsPerFrame)
		if err := sess.send(frame(&agentv1.Delivered{Seqs: seqs[:n]})); err != nil {
			h.log.Debug("receipt push deferred", "agent_id", agentID, "err", err)
			sess.receiptsDue.Store(true)
			return
		}
		h.m.receiptsSent.Add(float64(n))
		seqs = seqs[n:]
	}
}

// push queues one frame for a connected agent.
func (h *hub) push(agentID string, f *agentv1.Frame) bool {
	h.mu.Lock()
	sess := h.by[agentID]
	h.mu.Unlock()
	return sess != nil && sess.send(f) == nil
}

// addr is a connected agent's address.
func (h *hub) addr(agentID string) (netip.Addr, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sess := h.by[agentID]
	if sess == nil || !sess.remote.IsValid() {
		return netip.Addr{}, false
	}
	return sess.remote, true
}
