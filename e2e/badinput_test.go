package e2e

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gatehouse/gatehouse/e2e/harness"
	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// rawAgent speaks the agent protocol by hand, to send what a real agent never would.
type rawAgent struct {
	t    *testing.T
	id   *identity.Identity
	conn *quic.Conn
	ctrl *quic.Stream
	rd   *framing.Reader
}

func dialRaw(t *testing.T, ctx context.Context, s *testSite, id *identity.Identity) *rawAgent {
	t.Helper()
	cert, err := id.Certificate("raw-agent", nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := quic.DialAddr(ctx, s.relay.Addr, &tls.Config{
		Certificates:          []tls.Certificate{cert},
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: identity.VerifyPinned(s.fp),
		NextProtos:            []string{framing.ALPN},
		MinVersion:            tls.VersionTLS13,
	}, &quic.Config{MaxIdleTimeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("dial relay: %v", err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	ctrl, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &rawAgent{t: t, id: id, conn: conn, ctrl: ctrl, rd: framing.NewReader(ctrl, 0)}
}

// hello sends a Hello and returns the relay's answer: a HelloReply or an Error.
func (r *rawAgent) hello(key string) *agentv1.Frame {
	r.t.Helper()
	if err := framing.Write(r.ctrl, &agentv1.Frame{Body: &agentv1.Frame_Hello{Hello: &agentv1.Hello{
		AgentVersion: "raw", Hostname: "raw", RegistrationKey: key, Os: "linux",
	}}}); err != nil {
		r.t.Fatal(err)
	}
	f := &agentv1.Frame{}
	if err := r.rd.Next(f); err != nil {
		r.t.Fatalf("read hello answer: %v", err)
	}
	return f
}

func wantError(t *testing.T, f *agentv1.Frame, code agentv1.Error_Code) {
	t.Helper()
	if got := f.GetError().GetCode(); got != code {
		t.Fatalf("got %v, want Error %v", f, code)
	}
	if f.GetError().GetMessage() == "" {
		t.Errorf("error %v carries no message", code)
	}
}

// Every kind of bad input gets its clear error or counted drop, and a real
// agent's stream through the same relay goes on unharmed.
func TestBadInputIsRefusedAndTheRestGoesOn(t *testing.T) {
	s := newSite(t, harness.RelayOptions{})
	good, w := s.agent("agent-good")
	stop := make(chan struct{})
	done := writeFor(w, 10, 50*time.Millisecond, stop)
	ctx := s.ctx
	newID := func() *identity.Identity {
		id, err := identity.LoadOrCreate(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return id
	}

	t.Run("unknown agent", func(t *testing.T) {
		wantError(t, dialRaw(t, ctx, s, newID()).hello(""), agentv1.Error_CODE_UNKNOWN_AGENT)
	})
	t.Run("invalid key", func(t *testing.T) {
		wantError(t, dialRaw(t, ctx, s, newID()).hello("ghk_not-a-key"), agentv1.Error_CODE_KEY_INVALID)
	})
	t.Run("expired key", func(t *testing.T) {
		k, err := s.cloud.Admin.CreateRegistrationKey(ctx, s.site.TenantID, s.site.GroupID, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		wantError(t, dialRaw(t, ctx, s, newID()).hello(k.Key), agentv1.Error_CODE_KEY_EXPIRED)
	})

	// A registered raw agent for the frame-level cases.
	regID := newID()
	reg := dialRaw(t, ctx, s, regID)
	if f := reg.hello(s.site.RegistrationKey); f.GetHelloReply() == nil {
		t.Fatalf("got %v, want HelloReply", f)
	}
	lane, err := reg.conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	laneRd := framing.NewReader(lane, 0)
	send := func(b *agentv1.EventBatch) *agentv1.BatchAck {
		t.Helper()
		if err := framing.Write(lane, &agentv1.Frame{Body: &agentv1.Frame_EventBatch{EventBatch: b}}); err != nil {
			t.Fatal(err)
		}
		f := &agentv1.Frame{}
		if err := laneRd.Next(f); err != nil {
			t.Fatalf("read ack: %v", err)
		}
		if f.GetBatchAck() == nil {
			t.Fatalf("got %v, want BatchAck", f)
		}
		return f.GetBatchAck()
	}
	batch := &agentv1.EventBatch{AgentId: regID.ID(), Seq: 1, Priority: agentv1.Priority_PRIORITY_BULK,
		CreatedUnixMs: time.Now().UnixMilli(), Events: [][]byte{[]byte(`{"message":"raw replay test"}`)}}

	t.Run("replayed batch", func(t *testing.T) {
		if got := send(batch).GetStatus(); got != agentv1.BatchAck_STATUS_SPOOLED {
			t.Fatalf("first send: got %v, want SPOOLED", got)
		}
		if got := send(batch).GetStatus(); got != agentv1.BatchAck_STATUS_DUPLICATE {
			t.Fatalf("replay: got %v, want DUPLICATE", got)
		}
		if n, err := s.relay.Metric(ctx, "gatehouse_relay_batches_total", `result="duplicate"`); err != nil || n < 1 {
			t.Fatalf("duplicate batches counted: %v, %v; want >= 1", n, err)
		}
		// One metric counts duplicates; the spool's second counter is gone.
		if n, err := s.relay.Metric(ctx, "gatehouse_relay_batches_duplicate_total"); err != nil || n != 0 {
			t.Fatalf("gatehouse_relay_batches_duplicate_total: %v, %v; want absent (duplicates counted once, in gatehouse_relay_batches_total)", n, err)
		}
	})
	t.Run("batch for another agent", func(t *testing.T) {
		forged := &agentv1.EventBatch{AgentId: newID().ID(), Seq: 9, Events: batch.Events}
		ack := send(forged)
		if ack.GetStatus() != agentv1.BatchAck_STATUS_REJECTED || ack.GetReason() == "" {
			t.Fatalf("got %v, want REJECTED with a reason", ack)
		}
	})
	closedWith := func(t *testing.T, raw []byte, code agentv1.Error_Code) {
		t.Helper()
		bad := dialRaw(t, ctx, s, regID)
		if f := bad.hello(""); f.GetHelloReply() == nil {
			t.Fatalf("got %v, want HelloReply for a registered agent", f)
		}
		st, err := bad.conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write(raw); err != nil {
			t.Fatal(err)
		}
		// The relay says why on the control stream, then closes the connection.
		f := &agentv1.Frame{}
		err = bad.rd.Next(f)
		var appErr *quic.ApplicationError
		switch {
		case err == nil:
			wantError(t, f, code)
		case errors.As(err, &appErr) && appErr.ErrorCode == framing.CloseProtocol:
		case errors.Is(err, io.EOF):
			t.Fatalf("connection ended without saying why")
		default:
			t.Fatalf("got %v, want Error %v or close code %d", err, code, framing.CloseProtocol)
		}
	}
	t.Run("malformed frame", func(t *testing.T) {
		// A valid length prefix followed by bytes that are no protobuf.
		closedWith(t, []byte{0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, agentv1.Error_CODE_BAD_FRAME)
	})
	t.Run("oversized frame", func(t *testing.T) {
		closedWith(t, binary.AppendUvarint(nil, 64<<20), agentv1.Error_CODE_FRAME_TOO_LARGE)
	})
	if n, err := s.relay.Metric(ctx, "gatehouse_relay_rejects_total"); err != nil || n < 4 {
		t.Errorf("relay rejects counted: %v, %v; want >= 4", n, err)
	}

	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !s.relay.Running() {
		t.Fatal("relay died on bad input")
	}
	// The raw agent's spooled batch is delivered too, so the spool drains.
	s.waitExactlyOnce(2*time.Minute, []*harness.Agent{good}, w)
}
