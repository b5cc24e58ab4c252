package ingress

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

const helloTimeout = 15 * time.Second

// serveConn owns one agent connection and every goroutine it starts.
func (s *Server) serveConn(ctx context.Context, conn agentConn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := s.log.With("remote", conn.RemoteAddr().String(), "transport", conn.Transport())
	pub, err := identity.PeerEd25519(conn.TLS())
	if err != nil {
		s.h.m.rejects.WithLabelValues("bad_client_cert").Inc()
		log.Warn("agent refused", "err", err)
		conn.CloseWithError(framing.CloseProtocol, "client certificate must be Ed25519")
		return
	}
	agentID := identity.AgentID(pub)
	log = log.With("agent_id", agentID)

	hctx, hcancel := context.WithTimeout(ctx, helloTimeout)
	ctrl, err := conn.AcceptStream(hctx)
	hcancel()
	if err != nil {
		if ctx.Err() == nil {
			s.h.m.rejects.WithLabelValues("no_hello").Inc()
			log.Info("agent sent no control stream", "err", err)
		}
		conn.CloseWithError(framing.CloseProtocol, "no control stream")
		return
	}
	sess := newSession(agentID, ctrl, log)
	if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
		sess.remote = ap.Addr().Unmap()
	}
	// A fail closes the whole connection with the Error frame first.
	var failOnce sync.Once
	fail := func(ce *connError) {
		failOnce.Do(func() {
			s.h.m.rejects.WithLabelValues(reason(ce.code)).Inc()
			log.Warn("closing agent connection", "code", ce.code.String(), "reason", ce.msg)
			sess.sendNow(frame(&agentv1.Error{Code: ce.code, Message: ce.msg}))
			// Closing at once would discard the Error frame in flight: give
			// the agent a moment to read it and hang up itself.
			select {
			case <-conn.Done():
			case <-ctx.Done():
			case <-time.After(s.errorGrace):
			}
			conn.CloseWithError(closeCode(ce.code), ce.msg)
			cancel()
		})
	}
	rd := framing.NewReader(ctrl, 0)
	ctrl.SetReadDeadline(time.Now().Add(helloTimeout))
	reply, ce := s.h.hello(ctx, rd, agentID, pub)
	ctrl.SetReadDeadline(time.Time{})
	if ce != nil {
		fail(ce)
		return
	}
	if err := sess.sendNow(frame(reply)); err != nil {
		conn.CloseWithError(framing.CloseProtocol, "hello reply failed")
		return
	}
	log.Info("agent connected")
	s.connected.Add(1)
	gauge := s.h.m.connected.WithLabelValues(conn.Transport())
	gauge.Inc()
	defer func() {
		s.connected.Add(-1)
		gauge.Dec()
		log.Info("agent disconnected")
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		sess.writeLoop(ctx)
	}()
	s.hub.add(sess)
	defer s.hub.remove(sess)
	if seqs, err := s.h.store.PendingReceipts(agentID); err != nil {
		log.Error("pending receipts", "err", err)
	} else if len(seqs) > 0 {
		s.hub.deliver(agentID, seqs)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.receiptLoop(ctx, sess)
	}()
	// Pending actions and the desired isolation state, at every connect.
	for _, cmd := range s.h.pendingCommands(agentID) {
		if err := sess.send(frame(cmd)); err != nil {
			log.Debug("command push deferred to the next heartbeat", "command_id", cmd.GetId(), "err", err)
			break
		}
	}

	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			st, err := conn.AcceptStream(ctx)
			if err != nil {
				cancel()
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ce := s.h.lane(ctx, agentID, st, st, st.Abort)
				if ce != nil {
					// Tell the agent on the stream where it went wrong.
					st.SetWriteDeadline(time.Now().Add(5 * time.Second))
					framing.Write(st, frame(&agentv1.Error{Code: ce.code, Message: ce.msg}))
					fail(ce)
					return
				}
				st.Close()
			}()
		}
	}()
	if ce := s.h.control(ctx, agentID, reply.GetGroupId(), rd, sess.send); ce != nil {
		fail(ce)
		return
	}
	if ctx.Err() != nil && !isDone(conn.Done()) {
		conn.CloseWithError(framing.CloseUnavailable, "relay shutting down")
		return
	}
	conn.CloseWithError(framing.CloseNormal, "")
}

// session is an admitted agent's control stream writer. Frames from the
// control loop and receipt pushes go through one queue and one writer.
type session struct {
	agentID string
	log     *slog.Logger
	mu      sync.Mutex // serializes writes
	st      agentStream
	out     chan *agentv1.Frame
	remote  netip.Addr // the agent's address as this relay sees it
	// receiptsDue is set when a receipt push could not be queued; the
	// session's receipt loop then sends every pending receipt again.
	receiptsDue atomic.Bool
}

// receiptLoop resends the durable receipts a full control queue made the
// hub skip, so a connected agent does not wait for its next connect (or its
// redeliver_after) to forget delivered batches.
func (s *Server) receiptLoop(ctx context.Context, sess *session) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !sess.receiptsDue.Swap(false) {
			continue
		}
		seqs, err := s.h.store.PendingReceipts(sess.agentID)
		if err != nil {
			sess.log.Error("pending receipts", "err", err)
			sess.receiptsDue.Store(true)
			continue
		}
		s.hub.deliver(sess.agentID, seqs)
	}
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func newSession(agentID string, st agentStream, log *slog.Logger) *session {
	return &session{agentID: agentID, st: st, log: log, out: make(chan *agentv1.Frame, 64)}
}

func (s *session) sendNow(f *agentv1.Frame) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return framing.Write(s.st, f)
}

// send queues f; it fails (without blocking) when the queue is full.
func (s *session) send(f *agentv1.Frame) error {
	select {
	case s.out <- f:
		return nil
	default:
		return errQueueFull
	}
}

func (s *session) writeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-s.out:
			if err := s.sendNow(f); err != nil {
				s.log.Debug("control write", "err", err)
				return
			}
		}
	}
}
