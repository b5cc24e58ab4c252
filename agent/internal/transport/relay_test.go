package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"
)

// fakeRelay is a small real QUIC server speaking the agent protocol, with
// hooks to choose its answers.
type fakeRelay struct {
	t    *testing.T
	ln   *quic.Listener
	id   *identity.Identity
	addr string

	// onHello answers a Hello (default: HelloReply).
	onHello func(h *agentv1.Hello) *agentv1.Frame
	// onBatch answers a batch (default: SPOOLED); nil ack = close the connection.
	onBatch func(b *agentv1.EventBatch) *agentv1.BatchAck

	mu       sync.Mutex
	hellos   []*agentv1.Hello
	batches  []*agentv1.EventBatch
	receipts []uint64
	beats    int
	ctrls    []*quic.Stream
	wg       sync.WaitGroup
}

func newFakeRelay(t *testing.T) *fakeRelay {
	t.Helper()
	id, err := identity.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := id.Certificate("relay", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{framing.ALPN},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRelay{t: t, ln: ln, id: id, addr: ln.Addr().String()}
	ctx, cancel := context.WithCancel(context.Background())
	r.wg.Go(func() { r.serve(ctx) })
	t.Cleanup(func() { cancel(); ln.Close(); r.wg.Wait() })
	return r
}

func (r *fakeRelay) serve(ctx context.Context) {
	for {
		conn, err := r.ln.Accept(ctx)
		if err != nil {
			return
		}
		r.wg.Go(func() { r.handle(ctx, conn) })
	}
}

func (r *fakeRelay) handle(ctx context.Context, conn *quic.Conn) {
	defer conn.CloseWithError(0, "")
	pub, err := identity.PeerEd25519(conn.ConnectionState().TLS)
	if err != nil {
		return
	}
	agentID := identity.AgentID(pub)
	ctrl, err := conn.AcceptStream(ctx)
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
	r.mu.Unlock()
	reply := &agentv1.Frame{Body: &agentv1.Frame_HelloReply{HelloReply: &agentv1.HelloReply{
		AgentId: agentID, TenantId: "t1", GroupId: "g1", RelayId: "r1", Relays: []string{r.addr}, MaxInflightBatches: 4,
	}}}
	if r.onHello != nil {
		reply = r.onHello(f.GetHello())
	}
	r.writeCtrl(ctrl, reply)
	if e := reply.GetError(); e != nil {
		conn.CloseWithError(quic.ApplicationErrorCode(framing.CloseKeyInvalid), e.GetMessage())
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
			if f.GetHeartbeat() != nil {
				r.beats++
			}
			r.mu.Unlock()
		}
	}()
	for {
		st, err := conn.AcceptStream(ctx)
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
					conn.CloseWithError(0, "bye")
					return
				}
				if err := framing.Write(st, &agentv1.Frame{Body: &agentv1.Frame_BatchAck{BatchAck: ack}}); err != nil {
					return
				}
			}
		}()
	}
}

func (r *fakeRelay) writeCtrl(ctrl *quic.Stream, f *agentv1.Frame) {
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
