package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// Transport modes (config transport.mode).
const (
	ModeAuto = "auto"
	ModeQUIC = "quic"
	ModeTCP  = "tcp"
)

// candidate is one way to reach a relay, started after delay unless an
// earlier candidate fails first.
type candidate struct {
	kind  string // TransportQUIC or TransportTCP (direct or proxied)
	delay time.Duration
}

// plan orders the attempts: QUIC first with TCP after a head start; TCP
// first when it is what worked last on this network (QUIC is then
// re-probed during the session); one of them when the mode forces it.
func (c *Client) plan(key string) []candidate {
	switch c.opts.Mode {
	case ModeQUIC:
		return []candidate{{kind: TransportQUIC}}
	case ModeTCP:
		return []candidate{{kind: TransportTCP}}
	}
	if r, ok := c.mem.get(key); ok && r.Transport != TransportQUIC {
		return []candidate{{kind: TransportTCP}, {kind: TransportQUIC, delay: c.opts.TCPDelay}}
	}
	return []candidate{{kind: TransportQUIC}, {kind: TransportTCP, delay: c.opts.TCPDelay}}
}

type attemptResult struct {
	kind string
	s    *session
	rep  *agentv1.HelloReply
	rd   *framing.Reader
	err  error
}

// establish races the plan's candidates (Happy Eyeballs): the first to
// finish the TLS handshake and the Hello wins, the others are cancelled
// and closed. It remembers what won for this network.
func (c *Client) establish(ctx context.Context, addr string) (*session, *agentv1.HelloReply, *framing.Reader, error) {
	key := networkKey(addr)
	plan := c.plan(key)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan attemptResult, len(plan))
	kick := make(chan struct{}) // closed when an attempt fails: start the next at once
	var kickOnce sync.Once
	var wg sync.WaitGroup
	for _, cand := range plan {
		wg.Go(func() {
			if cand.delay > 0 {
				t := time.NewTimer(cand.delay)
				select {
				case <-rctx.Done():
					t.Stop()
					results <- attemptResult{kind: cand.kind, err: rctx.Err()}
					return
				case <-kick:
					t.Stop()
				case <-t.C:
				}
			}
			r := c.attempt(rctx, addr, cand.kind)
			if r.err != nil {
				kickOnce.Do(func() { close(kick) })
			}
			results <- r
		})
	}
	var win *attemptResult
	var failed []attemptResult
	for i := range plan {
		r := <-results
		if r.err != nil && win == nil && i < len(plan)-1 && rctx.Err() == nil {
			c.reportEarly(addr, r)
		}
		switch {
		case r.err == nil && win == nil:
			win = &r
			cancel()
		case r.err == nil:
			r.s.conn.Close() // lost the race
		case r.kind == TransportTCP && errors.Is(r.err, syscall.ECONNREFUSED):
			// The relay's host is up but nothing listens on its port: the
			// relay is down, and waiting out QUIC's handshake timeout would
			// only delay moving to another relay.
			failed = append(failed, r)
			cancel()
		case rctx.Err() == nil || win == nil:
			failed = append(failed, r)
		}
	}
	wg.Wait()
	if win == nil {
		return nil, nil, nil, bestError(addr, failed)
	}
	for _, f := range failed {
		c.log.Debug("transport attempt lost", "relay", addr, "transport", f.kind, "err", f.err)
	}
	if c.opts.Mode == ModeAuto {
		if err := c.mem.set(key, win.s.conn.Transport(), c.opts.Clock.Now()); err != nil {
			c.log.Warn("remember transport", "err", err)
		}
	}
	return win.s, win.rep, win.rd, nil
}

// attempt dials one transport and does the hello on it.
func (c *Client) attempt(ctx context.Context, addr, kind string) attemptResult {
	var cn conn
	var pc *pinCheck
	var err error
	if kind == TransportQUIC {
		cn, pc, err = c.dialQUIC(ctx, addr)
	} else {
		cn, pc, err = c.dialTCP(ctx, addr)
	}
	if err != nil {
		return attemptResult{kind: kind, err: err}
	}
	// Reads of the hello reply end when the race is lost.
	stop := context.AfterFunc(ctx, cn.Close)
	defer stop()
	s := &session{c: c, conn: cn, addr: addr}
	rep, rd, err := s.handshake(ctx)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err == nil {
		err = c.savePinOnFirstUse(pc, addr)
	}
	if err != nil {
		cn.Close()
		return attemptResult{kind: kind, err: err}
	}
	return attemptResult{kind: kind, s: s, rep: rep, rd: rd}
}

// reportEarly puts a failure that needs the operator (the relay's refusal,
// a pin mismatch, the proxy refusing or unreachable) in the status and the
// log as soon as its leg fails, while the other leg still tries: a QUIC
// handshake through a firewall that drops UDP takes the whole dial timeout,
// and the operator should not see the last session's error until then.
func (c *Client) reportEarly(addr string, r attemptResult) {
	if errorRank(r.err) < 2 {
		return
	}
	c.log.Warn("transport attempt failed; still trying the other transport", "relay", addr, "transport", r.kind, "err", r.err)
	c.setStatus(func(s *Status) { s.LastError = r.err.Error() })
}

// errorRank orders failures by what they tell the operator: what the relay
// said, then a pin mismatch, then a proxy failure, then the rest.
func errorRank(err error) int {
	var re *RelayError
	var pe *ProxyError
	switch {
	case errors.As(err, &re):
		return 4
	case errors.Is(err, ErrPinMismatch):
		return 3
	case errors.As(err, &pe):
		return 2
	case errors.Is(err, context.Canceled):
		return 0
	}
	return 1
}

// bestError picks the failure that tells the operator most (errorRank).
func bestError(addr string, failed []attemptResult) error {
	rank := errorRank
	var best error
	var others []error
	for _, f := range failed {
		if best == nil || rank(f.err) > rank(best) {
			if best != nil {
				others = append(others, best)
			}
			best = f.err
		} else {
			others = append(others, f.err)
		}
	}
	if best == nil {
		return fmt.Errorf("relay %s: no transport to try", addr)
	}
	if len(others) == 0 {
		return best
	}
	return &raceError{best: best, others: others}
}

// raceError is the best failure of a race, with the others after it.
type raceError struct {
	best   error
	others []error
}

func (e *raceError) Error() string {
	msg := e.best.Error()
	for _, o := range e.others {
		msg += "; also: " + o.Error()
	}
	return msg
}

func (e *raceError) Unwrap() []error { return append([]error{e.best}, e.others...) }
