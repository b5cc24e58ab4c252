package transport

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// A QUIC path that stops answering mid-session (a firewall starts dropping
// UDP) is otherwise noticed only at the idle timeout (3 s) and the agent
// then reconnects from scratch. Instead, when what the agent wrote stays
// unanswered well past the path's round-trip time, the session starts the
// TCP leg alongside, as at connect, and moves to whichever answers first:
// the QUIC path (an ACK of what was written) or the TCP leg (its Hello reply).
const (
	// minStall is the least silence called a stall: several times the
	// peer's maximum ACK delay (25 ms) plus scheduling slack on a loaded host.
	minStall = 300 * time.Millisecond
	// stallRTTs is the silence, in smoothed RTTs, called a stall on a slow path.
	stallRTTs = 5
	// stallPoll is how often the watcher looks at the connection's counters
	// while a write is unanswered (and only then).
	stallPoll = 25 * time.Millisecond
	// tcpRetryAfter keeps a failed TCP leg from being retried at every poll.
	tcpRetryAfter = 5 * time.Second
)

// writeClock remembers the first stream write that no ACK from the relay
// has followed yet. Every stream write is ack-eliciting: on a live path the
// relay's QUIC ACK arrives within an RTT plus its ACK delay, however slow
// the relay is to answer the batch itself. An ACK that acknowledges new
// packets of ours gives an RTT sample, which is how it is seen here (quic-go
// exposes no ACK counter). Packets merely received prove nothing: when only
// the agent's direction is dropped, the relay's retransmissions and
// keep-alives still arrive.
type writeClock struct {
	now func() time.Time

	mu    sync.Mutex
	conn  *quic.Conn
	first time.Time // zero: nothing unanswered
	mark  ackMark   // the RTT samples when first was written
	armed chan struct{}
}

// ackMark changes whenever an ACK of new packets of ours brings an RTT sample.
type ackMark struct{ latest, smoothed, dev time.Duration }

func ackMarkOf(c *quic.Conn) ackMark {
	st := c.ConnectionStats()
	return ackMark{st.LatestRTT, st.SmoothedRTT, st.MeanDeviation}
}

func newWriteClock(now func() time.Time) *writeClock {
	return &writeClock{now: now, armed: make(chan struct{}, 1)}
}

func (w *writeClock) wrote() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn == nil {
		return
	}
	mark := ackMarkOf(w.conn)
	if !w.first.IsZero() && mark == w.mark {
		return // an earlier write is still unanswered
	}
	w.first, w.mark = w.now(), mark
	select {
	case w.armed <- struct{}{}:
	default:
	}
}

// unanswered returns since when a write has gone unanswered (zero: none),
// clearing the mark once an ACK has come back.
func (w *writeClock) unanswered() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.first.IsZero() || ackMarkOf(w.conn) != w.mark {
		w.first = time.Time{}
		return time.Time{}
	}
	return w.first
}

// stallAfter is how long a write may stay unanswered on this path.
func stallAfter(c *quic.Conn) time.Duration {
	return max(stallRTTs*c.ConnectionStats().SmoothedRTT, minStall)
}

// switchOver ends a QUIC session whose path stalled, handing over the TCP
// session that answered instead; connectOnce serves it at once.
type switchOver struct {
	s       *session
	rep     *agentv1.HelloReply
	rd      *framing.Reader
	stalled time.Time // the first unanswered write
}

func (e *switchOver) Error() string { return "quic path stalled; moving to " + e.s.conn.Transport() }

// watchPath runs beside a QUIC session in auto mode: on a stall it starts
// the TCP leg and hands the session over to it when it answers before QUIC
// does.
func (s *session) watchPath(ctx context.Context) error {
	qc := s.conn.(*quicConn)
	var notBefore time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-qc.w.armed:
		}
		t := time.NewTicker(stallPoll)
		for {
			first := qc.w.unanswered()
			if first.IsZero() {
				break
			}
			now := s.c.opts.Clock.Now()
			if silent := now.Sub(first); silent >= stallAfter(qc.c) && !now.Before(notBefore) {
				s.c.log.Info("quic path stalled, trying tcp alongside", "relay", s.addr, "unanswered_for", silent.Round(time.Millisecond),
					"smoothed_rtt", qc.c.ConnectionStats().SmoothedRTT)
				sw, err := s.raceTCP(ctx, qc)
				if sw != nil {
					t.Stop()
					sw.stalled = first
					s.handOver(sw)
					return nil
				}
				if err != nil {
					s.c.log.Warn("tcp leg failed, staying on quic", "relay", s.addr, "err", err)
					notBefore = s.c.opts.Clock.Now().Add(tcpRetryAfter)
				}
			}
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		t.Stop()
	}
}

// handOver ends the session with sw, or closes sw's connection when the
// session already ended for another reason (nobody would serve it).
func (s *session) handOver(sw *switchOver) {
	taken := false
	s.errOnce.Do(func() { s.err, taken = sw, true })
	s.cancel()
	if !taken {
		sw.s.conn.Close()
	}
}

// raceTCP dials TCP (through the proxy when one applies) and says Hello
// while watching QUIC: an ACK back on QUIC cancels the TCP leg (nil, nil);
// a TCP session that answers first is returned.
func (s *session) raceTCP(ctx context.Context, qc *quicConn) (*switchOver, error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan attemptResult, 1)
	go func() { done <- s.c.attempt(actx, s.addr, TransportTCP) }()
	t := time.NewTicker(stallPoll)
	defer t.Stop()
	for {
		select {
		case r := <-done:
			if r.err != nil {
				if errors.Is(r.err, context.Canceled) {
					return nil, nil
				}
				return nil, r.err
			}
			return &switchOver{s: r.s, rep: r.rep, rd: r.rd}, nil
		case <-t.C:
			if qc.w.unanswered().IsZero() {
				cancel()
				if r := <-done; r.err == nil {
					r.s.conn.Close()
				}
				s.c.log.Info("quic path answered again, dropping the tcp leg", "relay", s.addr)
				return nil, nil
			}
		}
	}
}
