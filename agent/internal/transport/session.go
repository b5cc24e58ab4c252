package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

const (
	defaultInflight = 32
	helloTimeout    = 15 * time.Second
)

var lanes = []agentv1.Priority{
	agentv1.Priority_PRIORITY_SECURITY,
	agentv1.Priority_PRIORITY_BULK,
	agentv1.Priority_PRIORITY_FILE,
}

// session is one connection to a relay.
type session struct {
	c    *Client
	conn conn
	addr string

	ctrl     io.Writer  // the control stream
	ctrlMu   sync.Mutex // one writer at a time on the control stream
	inflight int
	hbEvery  time.Duration

	// resendBefore, when set, makes batches spooled before it go out again:
	// this session is with another relay than the last one, or with a relay
	// that lost its data (the agent had to register again), so this relay
	// does not hold them (the cloud deduplicates the resend).
	resendBefore time.Time

	wg      sync.WaitGroup
	errOnce sync.Once
	err     error
	cancel  context.CancelFunc
}

// fail records the first error and ends the session.
func (s *session) fail(err error) {
	s.errOnce.Do(func() { s.err = err })
	s.cancel()
}

// serve runs an established session (hello done) until it fails or ctx ends.
func (s *session) serve(ctx context.Context, rep *agentv1.HelloReply, rd *framing.Reader) (healthy bool, err error) {
	defer s.conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.cancel = cancel

	again := s.c.registered(rep)
	if prev := s.c.swapLastRelay(s.addr); again || (prev != "" && prev != s.addr) {
		s.resendBefore = s.c.opts.Clock.Now()
	}
	s.policyTier(rep.GetPolicyTier())
	s.inflight = int(rep.GetMaxInflightBatches())
	if s.inflight <= 0 {
		s.inflight = defaultInflight
	}
	s.hbEvery = s.c.opts.HeartbeatInterval
	if ms := rep.GetHeartbeatIntervalMs(); ms > 0 {
		s.hbEvery = time.Duration(ms) * time.Millisecond
	}
	tr := s.conn.Transport()
	s.c.setStatus(func(st *Status) {
		st.State = StateConnected
		st.Relay = s.addr
		st.LastError = ""
		st.Transport = tr
	})
	s.c.log.Info("connected to relay", "relay", s.addr, "transport", tr, "agent_id", rep.GetAgentId(), "max_inflight", s.inflight)

	run := func(f func(context.Context) error) {
		s.wg.Go(func() {
			if err := f(ctx); err != nil {
				s.fail(err)
			}
		})
	}
	run(func(ctx context.Context) error { return s.readControl(ctx, rd) })
	run(s.heartbeats)
	for _, l := range lanes {
		run(func(ctx context.Context) error { return s.runLane(ctx, l) })
	}
	if tr != TransportQUIC && s.c.opts.Mode == ModeAuto {
		run(s.reprobeQUIC)
	}
	if tr == TransportQUIC && s.c.opts.Mode == ModeAuto {
		run(s.watchPath)
	}
	// Unblock stream reads when the session ends for any reason.
	stop := context.AfterFunc(ctx, s.conn.Close)
	defer stop()
	s.wg.Wait()
	if s.err == nil {
		s.err = errors.New("session ended")
	}
	var re *RelayError
	var sw *switchOver
	if tr == TransportTCPProxy && !errors.As(s.err, &re) && !errors.Is(s.err, errQUICBack) && !errors.As(s.err, &sw) {
		// A broken tunnel looks like the relay hanging up (EOF, reset):
		// say the proxy was in the path, it may be what died.
		s.err = fmt.Errorf("%w (connected through proxy %s)", s.err, s.c.Status().Proxy)
	}
	return true, s.err
}

func (s *session) handshake(ctx context.Context) (*agentv1.HelloReply, *framing.Reader, error) {
	hctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	ctrl, err := s.conn.OpenStream(hctx)
	if err != nil {
		return nil, nil, fmt.Errorf("relay %s: open control stream: %w", s.addr, fromClose(err))
	}
	s.ctrl = ctrl
	if err := s.writeControl(&agentv1.Frame{Body: &agentv1.Frame_Hello{Hello: s.c.hello()}}); err != nil {
		return nil, nil, fmt.Errorf("relay %s: send hello: %w", s.addr, fromClose(err))
	}
	ctrl.SetReadDeadline(time.Now().Add(helloTimeout))
	rd := framing.NewReader(ctrl, 0)
	var f agentv1.Frame
	if err := rd.Next(&f); err != nil {
		return nil, nil, fmt.Errorf("relay %s: read hello reply: %w", s.addr, fromClose(err))
	}
	ctrl.SetReadDeadline(time.Time{})
	switch b := f.Body.(type) {
	case *agentv1.Frame_HelloReply:
		return b.HelloReply, rd, nil
	case *agentv1.Frame_Error:
		return nil, nil, &RelayError{Code: b.Error.GetCode(), Message: b.Error.GetMessage()}
	default:
		return nil, nil, fmt.Errorf("relay %s: got %T before hello reply", s.addr, f.Body)
	}
}

func (s *session) writeControl(f *agentv1.Frame) error {
	s.ctrlMu.Lock()
	defer s.ctrlMu.Unlock()
	return framing.Write(s.ctrl, f)
}

func (s *session) readControl(ctx context.Context, rd *framing.Reader) error {
	for {
		var f agentv1.Frame
		if err := rd.Next(&f); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay %s: control stream: %w", s.addr, fromClose(err))
		}
		switch b := f.Body.(type) {
		case *agentv1.Frame_Delivered:
			if err := s.delivered(b.Delivered.GetSeqs()); err != nil {
				return err
			}
		case *agentv1.Frame_HeartbeatReply:
			s.policyTier(b.HeartbeatReply.GetPolicyTier())
			s.c.sitePins(b.HeartbeatReply.GetRelayPins())
			for _, cmd := range b.HeartbeatReply.GetCommands() {
				s.command(ctx, cmd)
			}
		case *agentv1.Frame_Command:
			s.command(ctx, b.Command)
		case *agentv1.Frame_Error:
			return &RelayError{Code: b.Error.GetCode(), Message: b.Error.GetMessage()}
		default:
			s.c.log.Debug("ignoring unexpected control frame", "type", fmt.Sprintf("%T", f.Body))
		}
	}
}

// policyTier hands a tier from the relay to the agent ("" means unknown).
func (s *session) policyTier(tier string) {
	if tier != "" && s.c.opts.OnPolicyTier != nil {
		s.c.opts.OnPolicyTier(tier)
	}
}

func (s *session) delivered(seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	n, err := s.c.opts.Ring.Deliver(seqs)
	if err != nil {
		// Not acked: the relay sends the receipt again on the next connect.
		s.c.log.Error("forget delivered batches", "err", err)
		return nil
	}
	s.c.log.Debug("batches delivered", "seqs", len(seqs), "known", n)
	return s.writeControl(&agentv1.Frame{Body: &agentv1.Frame_ReceiptAck{ReceiptAck: &agentv1.ReceiptAck{Seqs: seqs}}})
}

// command runs a server-initiated action off the reader (a file or a
// process can take seconds) and sends its result on this session. A result
// lost with the session is not lost for good: the relay sends the command
// again and the executor answers a repeated id with its recorded result.
func (s *session) command(ctx context.Context, cmd *agentv1.Command) {
	if s.c.opts.OnCommand == nil {
		s.c.log.Warn("relay sent a command this agent does not support", "id", cmd.GetId(), "type", cmd.GetAction().GetType().String())
		_ = s.writeControl(&agentv1.Frame{Body: &agentv1.Frame_CommandResult{CommandResult: &agentv1.CommandResult{
			Id: cmd.GetId(), Ok: false, Reason: "unsupported command type " + cmd.GetAction().GetType().String(),
		}}})
		return
	}
	s.wg.Go(func() {
		s.c.cmdMu.Lock()
		res := s.c.opts.OnCommand(ctx, cmd)
		s.c.cmdMu.Unlock()
		if res == nil || ctx.Err() != nil {
			return
		}
		res.Id = cmd.GetId()
		if err := s.writeControl(&agentv1.Frame{Body: &agentv1.Frame_CommandResult{CommandResult: res}}); err != nil {
			s.c.log.Debug("command result not sent; the relay will ask again", "id", cmd.GetId(), "err", err)
		}
	})
}

func (s *session) heartbeats(ctx context.Context) error {
	t := time.NewTicker(s.hbEvery)
	defer t.Stop()
	for {
		hb := &agentv1.Heartbeat{
			AgentVersion:   s.c.opts.Version,
			ContentVersion: s.c.opts.ContentVersion,
			SentUnixMs:     s.c.opts.Clock.Now().UnixMilli(),
		}
		if s.c.opts.Stats != nil {
			hb.Stats = s.c.opts.Stats()
		}
		if err := s.writeControl(&agentv1.Frame{Body: &agentv1.Frame_Heartbeat{Heartbeat: hb}}); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay %s: send heartbeat: %w", s.addr, fromClose(err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.c.hbNow:
		}
	}
}

// errQUICBack ends a TCP session when a re-probe found QUIC working.
var errQUICBack = errors.New("quic works again")

// reprobeQUIC checks every QUICReprobe whether QUIC now reaches the relay
// (a TLS handshake, no hello); if so it records QUIC for this network and
// ends the session, so the client reconnects over QUIC at once. Batches in
// flight are resent and deduplicated by the relay.
func (s *session) reprobeQUIC(ctx context.Context) error {
	t := time.NewTicker(s.c.opts.QUICReprobe)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cn, _, err := s.c.dialQUIC(ctx, s.addr)
		if err != nil {
			s.c.log.Debug("quic re-probe failed, staying on tcp", "relay", s.addr, "err", err)
			continue
		}
		cn.Close()
		if err := s.c.mem.set(networkKey(s.addr), TransportQUIC, s.c.opts.Clock.Now()); err != nil {
			s.c.log.Warn("remember transport", "err", err)
		}
		return errQUICBack
	}
}
