package ingress

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// protoStream is a stream of either transport, as the test agent sees it.
type protoStream interface {
	io.ReadWriter
}

// protoAgent speaks the agent protocol over a QUIC connection or a yamux
// session on TLS/TCP.
type protoAgent struct {
	open  func() (protoStream, error)
	close func()
	done  <-chan struct{}
}

func dialTCP(t *testing.T, r *relay, id *identity.Identity, alpn []string) (*protoAgent, error) {
	t.Helper()
	cert, err := id.Certificate("agent", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.srv.TCPAddr().(*net.TCPAddr).Port != r.srv.Addr().(*net.UDPAddr).Port {
		t.Fatalf("tcp port %s, want the udp port %s", r.srv.TCPAddr(), r.srv.Addr())
	}
	tc, err := tls.Dial("tcp", r.srv.TCPAddr().String(), &tls.Config{
		Certificates: []tls.Certificate{cert}, NextProtos: alpn, MinVersion: tls.VersionTLS13,
		InsecureSkipVerify: true, VerifyPeerCertificate: identity.VerifyPinned(r.srv.Fingerprint()),
	})
	if err != nil {
		return nil, err
	}
	sess, err := yamux.Client(tc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return &protoAgent{
		open:  func() (protoStream, error) { return sess.OpenStream() },
		close: func() { sess.Close() },
		done:  sess.CloseChan(),
	}, nil
}

func dialQUICProto(t *testing.T, r *relay, id *identity.Identity) *protoAgent {
	a := dial(t, r, id)
	first := true
	return &protoAgent{
		open: func() (protoStream, error) {
			if first { // dial already opened the control stream
				first = false
				return a.ctrl, nil
			}
			return a.conn.OpenStreamSync(context.Background())
		},
		close: func() { a.conn.CloseWithError(0, "") },
		done:  a.conn.Context().Done(),
	}
}

func readFrame(t *testing.T, rd *framing.Reader) *agentv1.Frame {
	t.Helper()
	f := &agentv1.Frame{}
	if err := rd.Next(f); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return f
}

// TestBothTransports drives the same protocol over QUIC and over TLS/TCP
// against one relay on one port number.
func TestBothTransports(t *testing.T) {
	r := startRelay(t, nil)
	for _, tr := range []string{TransportQUIC, TransportTCP} {
		t.Run(tr, func(t *testing.T) {
			id := newAgentIdentity(t)
			register(t, r, id)
			var a *protoAgent
			if tr == TransportTCP {
				var err error
				if a, err = dialTCP(t, r, id, []string{framing.ALPN}); err != nil {
					t.Fatal(err)
				}
			} else {
				a = dialQUICProto(t, r, id)
			}
			ctrl, err := a.open()
			if err != nil {
				t.Fatal(err)
			}
			crd := framing.NewReader(ctrl, 0)
			framing.Write(ctrl, &agentv1.Frame{Body: &agentv1.Frame_Hello{Hello: &agentv1.Hello{Hostname: "h"}}})
			if rep := readFrame(t, crd).GetHelloReply(); rep == nil || rep.AgentId != id.ID() {
				t.Fatalf("hello reply: got %v, want agent %s", rep, id.ID())
			}
			// Two lanes on separate streams, acked on their own stream.
			for lane, seq := range map[agentv1.Priority]uint64{agentv1.Priority_PRIORITY_SECURITY: 1, agentv1.Priority_PRIORITY_BULK: 2} {
				st, err := a.open()
				if err != nil {
					t.Fatal(err)
				}
				b := batch(id.ID(), seq)
				b.GetEventBatch().Priority = lane
				framing.Write(st, b)
				ack := readFrame(t, framing.NewReader(st, 0)).GetBatchAck()
				if ack == nil || ack.Seq != seq || ack.Status != agentv1.BatchAck_STATUS_SPOOLED {
					t.Fatalf("ack: got %v, want seq %d spooled", ack, seq)
				}
			}
			if got := value(r.srv.h.m.connected.WithLabelValues(tr)); got != 1 {
				t.Fatalf("agents_connected{transport=%s}: got %v, want 1", tr, got)
			}
			framing.Write(ctrl, &agentv1.Frame{Body: &agentv1.Frame_Heartbeat{Heartbeat: &agentv1.Heartbeat{}}})
			if hb := readFrame(t, crd).GetHeartbeatReply(); hb == nil {
				t.Fatal("heartbeat: got no reply")
			}
			a.close()
			waitFor(t, "disconnect counted", func() bool {
				return value(r.srv.h.m.connected.WithLabelValues(tr)) == 0
			})
		})
	}
	if got := r.spool.Stats().Batches; got != 4 {
		t.Fatalf("spooled batches: got %d, want 4", got)
	}
}

// TestTCPRefusals: over TCP the Error frame carries the close reason, and
// a client without the ALPN is refused at the TLS layer.
func TestTCPRefusals(t *testing.T) {
	r := startRelay(t, nil)
	id := newAgentIdentity(t)
	a, err := dialTCP(t, r, id, []string{framing.ALPN})
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := a.open()
	if err != nil {
		t.Fatal(err)
	}
	framing.Write(ctrl, &agentv1.Frame{Body: &agentv1.Frame_Hello{Hello: &agentv1.Hello{Hostname: "h"}}})
	if e := readFrame(t, framing.NewReader(ctrl, 0)).GetError(); e == nil || e.Code != agentv1.Error_CODE_UNKNOWN_AGENT {
		t.Fatalf("got %v, want error %v", e, agentv1.Error_CODE_UNKNOWN_AGENT)
	}
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		t.Fatal("session not closed after the error")
	}

	// No ALPN: the handshake fails or the relay hangs up before any stream.
	b, err := dialTCP(t, r, id, []string{"h2"})
	if err == nil {
		st, err := b.open()
		if err == nil {
			framing.Write(st, &agentv1.Frame{Body: &agentv1.Frame_Hello{Hello: &agentv1.Hello{}}})
			if err := framing.NewReader(st, 0).Next(&agentv1.Frame{}); err == nil {
				t.Fatal("wrong ALPN: got a reply, want the connection refused")
			}
		}
	}
	waitFor(t, "handshake reject counted", func() bool {
		return value(r.srv.h.m.rejects.WithLabelValues("tls_handshake")) >= 1
	})
}

// value reads a gauge's or a counter's current value.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return -1
	}
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}
