package ingress

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/cloudclient"
	"github.com/gatehouse/gatehouse/relay/internal/sitestate"
	"github.com/gatehouse/gatehouse/relay/internal/sitestate/sitestatetest"
	"github.com/gatehouse/gatehouse/relay/internal/spool"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeCloud answers Register with a canned answer or error.
type fakeCloud struct {
	mu   sync.Mutex
	err  error
	resp *cloudv1.RegisterAgentResponse
	reqs []*cloudv1.RegisterAgentRequest
}

func (f *fakeCloud) Register(_ context.Context, req *cloudv1.RegisterAgentRequest) (*cloudv1.RegisterAgentResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	if f.err != nil {
		return nil, f.err
	}
	return f.resp, nil
}

type relay struct {
	srv   *Server
	spool *spool.Spool
	site  *sitestate.State
	dir   string
}

type testIdentity struct{}

func (testIdentity) RelayID() string  { return "relay-1" }
func (testIdentity) TenantID() string { return "t1" }

func startRelay(t *testing.T, cloud Registrar) *relay {
	t.Helper()
	dir := t.TempDir()
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(dir, "spool"), MaxBytes: 1 << 20, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	site := sitestatetest.New(t, testIdentity{})
	srv, err := New(Options{Listen: "127.0.0.1:0", DataDir: dir, Name: "relay-test", Logger: quiet()},
		Deps{Store: sp, Site: site, Identity: testIdentity{}, Cloud: cloud})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); sp.Run(ctx) }()
	go func() { defer wg.Done(); srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); sp.Close() })
	return &relay{srv: srv, spool: sp, site: site, dir: dir}
}

type agent struct {
	id   *identity.Identity
	conn *quic.Conn
	ctrl *quic.Stream
	rd   *framing.Reader
}

func newAgentIdentity(t *testing.T) *identity.Identity {
	id, err := identity.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func dial(t *testing.T, r *relay, id *identity.Identity) *agent {
	t.Helper()
	cert, err := id.Certificate("agent", nil)
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{
		Certificates: []tls.Certificate{cert}, NextProtos: []string{framing.ALPN}, MinVersion: tls.VersionTLS13,
		InsecureSkipVerify: true, VerifyPeerCertificate: identity.VerifyPinned(r.srv.Fingerprint()),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, r.srv.Addr().String(), tc, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	ctrl, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &agent{id: id, conn: conn, ctrl: ctrl, rd: framing.NewReader(ctrl, 0)}
}

func (a *agent) hello(t *testing.T, key string) *agentv1.Frame {
	t.Helper()
	if err := framing.Write(a.ctrl, &agentv1.Frame{Body: &agentv1.Frame_Hello{Hello: &agentv1.Hello{Hostname: "h", RegistrationKey: key}}}); err != nil {
		t.Fatal(err)
	}
	return a.next(t, a.rd)
}

func (a *agent) next(t *testing.T, rd *framing.Reader) *agentv1.Frame {
	t.Helper()
	f := &agentv1.Frame{}
	if err := rd.Next(f); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return f
}

// closeCode waits for the connection to end and returns its application code.
func (a *agent) closeCode(t *testing.T) quic.ApplicationErrorCode {
	t.Helper()
	select {
	case <-a.conn.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("connection not closed")
	}
	var ae *quic.ApplicationError
	if !errors.As(context.Cause(a.conn.Context()), &ae) {
		t.Fatalf("close cause: got %v, want application error", context.Cause(a.conn.Context()))
	}
	return ae.ErrorCode
}

func batch(agent string, seq uint64) *agentv1.Frame {
	return &agentv1.Frame{Body: &agentv1.Frame_EventBatch{EventBatch: &agentv1.EventBatch{
		AgentId: agent, Seq: seq, Priority: agentv1.Priority_PRIORITY_BULK, Events: [][]byte{[]byte(`{"message":"x"}`)},
	}}}
}

func register(t *testing.T, r *relay, id *identity.Identity) {
	t.Helper()
	if err := r.site.PutAgent(sitestate.AgentRecord{AgentID: id.ID(), TenantID: "t1", GroupID: "g1", RegisteredAt: time.Now()}, nil); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFingerprintFile(t *testing.T) {
	r := startRelay(t, nil)
	b, err := os.ReadFile(filepath.Join(r.dir, "identity", "fingerprint"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(b)), r.srv.Fingerprint(); got != want {
		t.Fatalf("fingerprint file: got %s, want %s", got, want)
	}
}

func TestKnownAgentBatchesAndReceipts(t *testing.T) {
	r := startRelay(t, nil)
	id := newAgentIdentity(t)
	register(t, r, id)
	a := dial(t, r, id)
	f := a.hello(t, "")
	rep := f.GetHelloReply()
	if rep == nil || rep.AgentId != id.ID() || rep.RelayId != "relay-1" || rep.TenantId != "t1" {
		t.Fatalf("hello reply: got %v, want agent %s relay-1 t1", f, id.ID())
	}
	lane, err := a.conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lr := framing.NewReader(lane, 0)
	wrong := batch("someone-else", 9)
	for _, fr := range []*agentv1.Frame{batch(id.ID(), 1), batch(id.ID(), 2), batch(id.ID(), 1), wrong} {
		if err := framing.Write(lane, fr); err != nil {
			t.Fatal(err)
		}
	}
	want := []struct {
		seq    uint64
		status agentv1.BatchAck_Status
	}{{1, agentv1.BatchAck_STATUS_SPOOLED}, {2, agentv1.BatchAck_STATUS_SPOOLED}, {1, agentv1.BatchAck_STATUS_DUPLICATE}, {9, agentv1.BatchAck_STATUS_REJECTED}}
	for _, w := range want {
		ack := a.next(t, lr).GetBatchAck()
		if ack == nil || ack.Seq != w.seq || ack.Status != w.status {
			t.Fatalf("ack: got %v, want seq %d %v", ack, w.seq, w.status)
		}
	}
	if got := r.srv.Connected(); got != 1 {
		t.Fatalf("connected: got %d, want 1", got)
	}
	// The uplink delivers: receipts are pushed on the control stream.
	items, _ := r.spool.Peek(1 << 20)
	receipts, err := r.spool.Complete(items)
	if err != nil {
		t.Fatal(err)
	}
	r.srv.Delivered(id.ID(), receipts[id.ID()])
	d := a.next(t, a.rd).GetDelivered()
	if d == nil || fmt.Sprint(d.Seqs) != "[1 2]" {
		t.Fatalf("delivered: got %v, want [1 2]", d)
	}
	framing.Write(a.ctrl, &agentv1.Frame{Body: &agentv1.Frame_ReceiptAck{ReceiptAck: &agentv1.ReceiptAck{Seqs: []uint64{1}}}})
	framing.Write(a.ctrl, &agentv1.Frame{Body: &agentv1.Frame_Heartbeat{Heartbeat: &agentv1.Heartbeat{}}})
	if hb := a.next(t, a.rd).GetHeartbeatReply(); hb == nil {
		t.Fatal("heartbeat: got no HeartbeatReply")
	}
	waitFor(t, "receipt 1 acked", func() bool { return r.spool.Stats().Receipts == 1 })

	// Reconnect: the pending receipt is sent again at once.
	a.conn.CloseWithError(0, "")
	a2 := dial(t, r, id)
	a2.hello(t, "")
	if d := a2.next(t, a2.rd).GetDelivered(); d == nil || fmt.Sprint(d.Seqs) != "[2]" {
		t.Fatalf("delivered on reconnect: got %v, want [2]", d)
	}
}

func TestRefusals(t *testing.T) {
	keyHash := func(key string, expires time.Time) *cloudv1.RegistrationKeyHash {
		sum := sha256.Sum256([]byte(key))
		return &cloudv1.RegistrationKeyHash{KeyId: key, Sha256: sum[:], TenantId: "t1", GroupId: "g-off", ExpiresUnixMs: expires.UnixMilli()}
	}
	unreachable := errors.New("dial tcp: connection refused")
	tests := []struct {
		name      string
		cloudErr  error
		key       string
		wantCode  agentv1.Error_Code
		wantClose quic.ApplicationErrorCode
		wantGroup string // on success
	}{
		{"no key", nil, "", agentv1.Error_CODE_UNKNOWN_AGENT, framing.CloseUnknownAgent, ""},
		{"cloud says invalid", &cloudclient.StatusError{HTTPStatus: 403, Code: cloudv1.Status_CODE_KEY_INVALID}, "k", agentv1.Error_CODE_KEY_INVALID, framing.CloseKeyInvalid, ""},
		{"cloud says expired", &cloudclient.StatusError{HTTPStatus: 403, Code: cloudv1.Status_CODE_KEY_EXPIRED}, "k", agentv1.Error_CODE_KEY_EXPIRED, framing.CloseKeyExpired, ""},
		{"cloud registers", nil, "k", 0, 0, "g-cloud"},
		{"offline good key", unreachable, "good", 0, 0, "g-off"},
		{"offline 503 good key", &cloudclient.StatusError{HTTPStatus: 503}, "good", 0, 0, "g-off"},
		{"offline unknown key", unreachable, "nope", agentv1.Error_CODE_KEY_INVALID, framing.CloseKeyInvalid, ""},
		{"offline expired key", unreachable, "old", agentv1.Error_CODE_KEY_EXPIRED, framing.CloseKeyExpired, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := &fakeCloud{err: tt.cloudErr, resp: &cloudv1.RegisterAgentResponse{TenantId: "t1", GroupId: "g-cloud"}}
			r := startRelay(t, fc)
			if _, err := r.site.Node().SetRegistrationKeys(context.Background(), 1, []*cloudv1.RegistrationKeyHash{
				keyHash("good", time.Now().Add(time.Hour)), keyHash("old", time.Now().Add(-time.Hour)),
			}, nil); err != nil {
				t.Fatal(err)
			}
			id := newAgentIdentity(t)
			a := dial(t, r, id)
			f := a.hello(t, tt.key)
			if tt.wantCode != 0 {
				if e := f.GetError(); e == nil || e.Code != tt.wantCode {
					t.Fatalf("got %v, want error %v", f, tt.wantCode)
				}
				if got := a.closeCode(t); got != tt.wantClose {
					t.Fatalf("close code: got %d, want %d", got, tt.wantClose)
				}
				if _, err := r.site.Agent(id.ID()); !errors.Is(err, sitestate.ErrNotFound) {
					t.Fatalf("registry after refusal: got %v, want ErrNotFound", err)
				}
				return
			}
			if rep := f.GetHelloReply(); rep == nil || rep.GroupId != tt.wantGroup {
				t.Fatalf("got %v, want hello reply with group %s", f, tt.wantGroup)
			}
			rec, err := r.site.Agent(id.ID())
			if err != nil {
				t.Fatal(err)
			}
			pending := r.site.PendingRegistrations()
			offline := tt.cloudErr != nil
			if rec.Pending != offline || (len(pending) == 1) != offline {
				t.Fatalf("pending: got record %v and %d pending, want %v", rec.Pending, len(pending), offline)
			}
		})
	}
}

func TestMalformedFramesCloseOnlyThatConnection(t *testing.T) {
	tests := []struct {
		name     string
		raw      []byte
		wantCode agentv1.Error_Code
	}{
		{"garbage", []byte{3, 0xff, 0xff, 0xff}, agentv1.Error_CODE_BAD_FRAME},
		{"oversized", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, agentv1.Error_CODE_FRAME_TOO_LARGE},
		{"hello on lane", func() []byte {
			b, _ := framing.Append(nil, &agentv1.Frame{Body: &agentv1.Frame_Hello{Hello: &agentv1.Hello{}}})
			return b
		}(), agentv1.Error_CODE_PROTOCOL},
	}
	r := startRelay(t, nil)
	good := newAgentIdentity(t)
	register(t, r, good)
	ga := dial(t, r, good)
	ga.hello(t, "")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := newAgentIdentity(t)
			register(t, r, id)
			a := dial(t, r, id)
			a.hello(t, "")
			lane, err := a.conn.OpenStreamSync(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			lane.Write(tt.raw)
			f := &agentv1.Frame{}
			if err := framing.NewReader(lane, 0).Next(f); err != nil {
				t.Fatalf("read error frame: %v", err)
			}
			if e := f.GetError(); e == nil || e.Code != tt.wantCode {
				t.Fatalf("got %v, want error %v", f, tt.wantCode)
			}
			if got := a.closeCode(t); got != framing.CloseProtocol {
				t.Fatalf("close code: got %d, want %d", got, framing.CloseProtocol)
			}
		})
	}
	// The well-behaved agent is still served.
	framing.Write(ga.ctrl, &agentv1.Frame{Body: &agentv1.Frame_Heartbeat{Heartbeat: &agentv1.Heartbeat{}}})
	if hb := ga.next(t, ga.rd).GetHeartbeatReply(); hb == nil {
		t.Fatal("other agent: got no heartbeat reply")
	}
}
