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
	// by holds every open session of an agent, newest last: an agent racing
	// QUIC against TCP can open a second session and close it again while
	// the first lives on, and the first must then be current again.
	by map[string][]*session
}

func newHub(m *metrics, log *slog.Logger) *hub {
	return &hub{m: m, log: log, by: make(map[string][]*session)}
}

// add makes sess the agent's current session (a reconnect replaces the old).
func (h *hub) add(sess *session) {
	h.mu.Lock()
	h.by[sess.agentID] = append(h.by[sess.agentID], sess)
	h.mu.Unlock()
}

// remove forgets sess; the agent's newest other open session, if any, is
// current again.
func (h *hub) remove(sess *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	all := h.by[sess.agentID]
	for i, s := range all {
		if s == sess {
			all = append(all[:i:i], all[i+1:]...)
			break
		}
	}
	if len(all) == 0 {
		delete(h.by, sess.agentID)
		return
	}
	h.by[sess.agentID] = all
}

// current is the agent's newest open session, or nil.
func (h *hub) current(agentID string) *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	all := h.by[agentID]
	if len(all) == 0 {
		return nil
	}
	return all[len(all)-1]
}

// deliver queues Delivered frames for a connected agent; otherwise the
// durable receipts wait for its next connect.
func (h *hub) deliver(agentID string, seqs []uint64) {
	sess := h.current(agentID)
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
	sess := h.current(agentID)
	return sess != nil && sess.send(f) == nil
}

// addr is a connected agent's address.
func (h *hub) addr(agentID string) (netip.Addr, bool) {
	sess := h.current(agentID)
	if sess == nil || !sess.remote.IsValid() {
		return netip.Addr{}, false
	}
	return sess.remote, true
}
