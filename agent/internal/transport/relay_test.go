package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"
)

// fakeRelay is a small real QUIC and TLS/TCP (yamux) server speaking the
// agent protocol, with hooks to choose its answers.
type fakeRelay struct {
	t    *testing.T
	ln   *quic.Listener
	tcp  net.Listener
	id   *identity.Identity
	addr string
	tc   *tls.Config

	// onHello answers a Hello (default: HelloReply).
	onHello func(h *agentv1.Hello) *agentv1.Frame
	// onBatch answers a batch (default: SPOOLED); nil ack = close the connection.
	onBatch func(b *agentv1.EventBatch) *agentv1.BatchAck
	// onHeartbeat, if set, answers every Heartbeat (default: no answer).
	onHeartbeat func() *agentv1.HeartbeatReply

	mu       sync.Mutex
	hellos   []*agentv1.Hello
	batches  []*agentv1.EventBatch
	receipts []uint64
	beats    int
	ctrls    []io.Writer
	conns    map[string]int // admitted connections by transport
	wg       sync.WaitGroup
}

// relayNet says what the fake relay serves on its port.
type relayNet struct {
	udpBlackhole bool // a UDP socket that never answers instead of QUIC
	noTCP        bool
}

func newFakeRelay(t *testing.T) *fakeRelay { return newFakeRelayOn(t, relayNet{}) }

func newFakeRelayOn(t *testing.T, rn relayNet) *fakeRelay {
	t.Helper()
	id, err := identity.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := id.Certificate("relay", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{framing.ALPN},
	}
	r := &fakeRelay{t: t, id: id, tc: tc, conns: map[string]int{}}
	var closers []io.Closer
	for {
		var udp net.Addr
		if rn.udpBlackhole {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			closers = []io.Closer{pc}
			udp = pc.LocalAddr()
		} else {
			ln, err := quic.ListenAddr("127.0.0.1:0", tc, nil)
			if err != nil {
				t.Fatal(err)
			}
			r.ln = ln
			closers = []io.Closer{ln}
			udp = ln.Addr()
		}
		r.addr = udp.String()
		if rn.noTCP {
			break
		}
		tl, err := net.Listen("tcp", r.addr)
		if err == nil {
			r.tcp = tl
			closers = append(closers, tl)
			break
		}
		for _, c := range closers {
			c.Close()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if r.ln != nil {
		r.wg.Go(func() { r.serveQUIC(ctx) })
	}
	if r.tcp != nil {
		r.wg.Go(func() { r.serveTCP(ctx) })
	}
	t.Cleanup(func() {
		cancel()
		for _, c := range closers {
			c.Close()
		}
		r.wg.Wait()
	})
	return r
}

func (r *fakeRelay) serveQUIC(ctx context.Context) {
	for {
		conn, err := r.ln.Accept(ctx)
		if err != nil {
			return
		}
		r.wg.Go(func() { r.handle(ctx, fakeQUIC{conn}) })
	}
}

func (r *fakeRelay) serveTCP(ctx context.Context) {
	for {
		c, err := r.tcp.Accept()
		if err != nil {
			return
		}
		r.wg.Go(func() {
			tc := tls.Server(c, r.tc)
			if err := tc.HandshakeContext(ctx); err != nil {
				c.Close()
				return
			}
			sess, err := yamux.Server(tc, nil)
			if err != nil {
				c.Close()
				return
			}
			stop := context.AfterFunc(ctx, func() { sess.Close() })
			defer stop()
			r.handle(ctx, fakeTCP{sess, tc})
		})
	}
}

// fakeConn is a connection of either transport, as the fake relay sees it.
type fakeConn interface {
	accept(ctx context.Context) (io.ReadWriteCloser, error)
	close(code uint64, msg string)
	state() tls.ConnectionState
	transport() string
}

type fakeQUIC struct{ c *quic.Conn }

func (f fakeQUIC) accept(ctx context.Context) (io.ReadWriteCloser, error) {
	return f.c.AcceptStream(ctx)
}
func (f fakeQUIC) close(code uint64, msg string) {
	f.c.CloseWithError(quic.ApplicationErrorCode(code), msg)
}
func (f fakeQUIC) state() tls.ConnectionState { return f.c.ConnectionState().TLS }
func (f fakeQUIC) transport() string          { return "quic" }

type fakeTCP struct {
	s  *yamux.Session
	tc *tls.Conn
}

func (f fakeTCP) accept(ctx context.Context) (io.ReadWriteCloser, error) {
	return f.s.AcceptStreamWithContext(ctx)
}
func (f fakeTCP) close(uint64, string)       { f.s.Close() }
func (f fakeTCP) state() tls.ConnectionState { return f.tc.ConnectionState() }
func (f fakeTCP) transport() string          { return "tcp" }

func (r *fakeRelay) connCount(transport string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns[transport]
}

func (r *fakeRelay) handle(ctx context.Context, conn fakeConn) {
	defer conn.close(0, "")
	pub, err := identity.PeerEd25519(conn.state())
	if err != nil {
		return
	}
	agentID := identity.AgentID(pub)
	ctrl, err := conn.accept(ctx)
	if err != nil {
		return
	}
	rd := framing.NewReader(ctrl, 0)
	var f agentv1.Frame
	if err := rd.Next(&f); err != nil || f.GetHello() == nil {
		return
	}
	r.mu.Lock()
	r.hellos = append(r.hellos, f.GetHello())
	r.ctrls = append(r.ctrls, ctrl)
	r.conns[conn.transport()]++
	r.mu.Unlock()
	reply := &agentv1.Frame{Body: &agentv1.Frame_HelloReply{HelloReply: &agentv1.HelloReply{
		AgentId: agentID, TenantId: "t1", GroupId: "g1", RelayId: "r1", Relays: []string{r.addr}, MaxInflightBatches: 4,
	}}}
	if r.onHello != nil {
		reply = r.onHello(f.GetHello())
	}
	r.writeCtrl(ctrl, reply)
	if e := reply.GetError(); e != nil {
		time.Sleep(50 * time.Millisecond) // let the Error frame go out first (TCP)
		conn.close(framing.CloseKeyInvalid, e.GetMessage())
		return
	}
	go func() { // control reader
		for {
			var f agentv1.Frame
			if err := rd.Next(&f); err != nil {
				return
			}
			r.mu.Lock()
			if ra := f.GetReceiptAck(); ra != nil {
				r.receipts = append(r.receipts, ra.GetSeqs()...)
			}
			hb := r.onHeartbeat
			if f.GetHeartbeat() != nil {
				r.beats++
			} else {
				hb = nil
			}
			r.mu.Unlock()
			if hb != nil {
				r.writeCtrl(ctrl, &agentv1.Frame{Body: &agentv1.Frame_HeartbeatReply{HeartbeatReply: hb()}})
			}
		}
	}()
	for {
		st, err := conn.accept(ctx)
		if err != nil {
			return
		}
		go func() {
			lr := framing.NewReader(st, 0)
			for {
				var f agentv1.Frame
				if err := lr.Next(&f); err != nil {
					return
				}
				b := f.GetEventBatch()
				r.mu.Lock()
				r.batches = append(r.batches, b)
				hook := r.onBatch
				r.mu.Unlock()
				ack := &agentv1.BatchAck{Seq: b.GetSeq(), Status: agentv1.BatchAck_STATUS_SPOOLED}
				if hook != nil {
					ack = hook(b)
				}
				if ack == nil {
					conn.close(0, "bye")
					return
				}
				if err := framing.Write(st, &agentv1.Frame{Body: &agentv1.Frame_BatchAck{BatchAck: ack}}); err != nil {
					return
				}
			}
		}()
	}
}

func (r *fakeRelay) writeCtrl(ctrl io.Writer, f *agentv1.Frame) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := framing.Write(ctrl, f); err != nil && !errors.Is(err, io.EOF) {
		r.t.Logf("relay write: %v", err)
	}
}

// deliver sends Delivered on the latest control stream.
func (r *fakeRelay) deliver(seqs ...uint64) {
	r.mu.Lock()
	ctrl := r.ctrls[len(r.ctrls)-1]
	r.mu.Unlock()
	r.writeCtrl(ctrl, &agentv1.Frame{Body: &agentv1.Frame_Delivered{Delivered: &agentv1.Delivered{Seqs: seqs}}})
}

func (r *fakeRelay) snapshot() (hellos []*agentv1.Hello, batches []*agentv1.EventBatch, receipts []uint64, beats int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.batches {
		batches = append(batches, proto.Clone(b).(*agentv1.EventBatch))
	}
	return append([]*agentv1.Hello(nil), r.hellos...), batches, append([]uint64(nil), r.receipts...), r.beats
}
