package uplink

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/internal/identity"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/cloudclient"
	"github.com/gatehouse/gatehouse/relay/internal/sitestate"
	"github.com/gatehouse/gatehouse/relay/internal/sitestate/sitestatetest"
	"github.com/gatehouse/gatehouse/relay/internal/spool"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeCloud speaks the relay API of docs/design.md and injects faults.
type fakeCloud struct {
	t  *testing.T
	mu sync.Mutex
	// faults are consumed one per upload attempt: "503", "429", "drop", "slow".
	faults    []string
	reject    map[uint64]bool // seqs to reject
	stored    map[string]bool // "agent/seq"
	uploadIDs []string        // per attempt
	calls     []string        // path per call, in order
	auth      []string
}

func newFakeCloud(t *testing.T) (*fakeCloud, *httptest.Server) {
	fc := &fakeCloud{t: t, stored: map[string]bool{}, reject: map[uint64]bool{}}
	srv := httptest.NewUnstartedServer(fc)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return fc, srv
}

func (fc *fakeCloud) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	fc.mu.Lock()
	fc.calls = append(fc.calls, r.URL.Path)
	fc.auth = append(fc.auth, r.Header.Get("Authorization"))
	fc.mu.Unlock()
	reply := func(m proto.Message) {
		b, _ := proto.Marshal(m)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(b)
	}
	switch r.URL.Path {
	case "/v1/relay/enroll":
		req := &cloudv1.EnrollRequest{}
		if proto.Unmarshal(body, req) != nil || req.EnrollmentToken != "tok" {
			w.WriteHeader(403)
			return
		}
		reply(&cloudv1.EnrollResponse{RelayId: "r1", TenantId: "t1", SiteId: "s1", RelaySecret: "sec"})
	case "/v1/agents/register":
		req := &cloudv1.RegisterAgentRequest{}
		proto.Unmarshal(body, req)
		reply(&cloudv1.RegisterAgentResponse{AgentId: req.AgentId, TenantId: "t1", GroupId: "g1"})
	case "/v1/control/poll":
		reply(&cloudv1.ControlPollResponse{
			Version: 3, RegistrationKeys: []*cloudv1.RegistrationKeyHash{{KeyId: "k1", TenantId: "t1"}},
			GroupPolicies: []*cloudv1.GroupPolicy{{GroupId: "g1", Tier: "server"}},
		})
	case "/v1/ingest/upload":
		if r.Header.Get("Content-Encoding") != "zstd" {
			fc.t.Errorf("upload Content-Encoding: got %q, want zstd", r.Header.Get("Content-Encoding"))
		}
		dec, _ := zstd.NewReader(nil)
		raw, err := dec.DecodeAll(body, nil)
		dec.Close()
		req := &cloudv1.UploadRequest{}
		if err != nil || proto.Unmarshal(raw, req) != nil {
			fc.t.Errorf("upload body: zstd %v", err)
			w.WriteHeader(400)
			return
		}
		fc.mu.Lock()
		fc.uploadIDs = append(fc.uploadIDs, req.UploadId)
		fault := ""
		if len(fc.faults) > 0 {
			fault, fc.faults = fc.faults[0], fc.faults[1:]
		}
		fc.mu.Unlock()
		switch fault {
		case "503", "429":
			w.Header().Set("Retry-After", "0")
			code := 503
			if fault == "429" {
				code = 429
			}
			w.WriteHeader(code)
			b, _ := proto.Marshal(&cloudv1.Status{Code: cloudv1.Status_CODE_UNAVAILABLE, Message: "busy"})
			w.Write(b)
			return
		case "drop":
			hj, ok := w.(http.Hijacker)
			if !ok {
				panic(http.ErrAbortHandler) // HTTP/2: reset the stream
			}
			c, _, _ := hj.Hijack()
			c.Close()
			return
		}
		ack := &cloudv1.UploadAck{UploadId: req.UploadId}
		fc.mu.Lock()
		for _, b := range req.Batches {
			k := fmt.Sprintf("%s/%d", b.AgentId, b.Seq)
			switch {
			case fc.reject[b.Seq]:
				ack.Rejected = append(ack.Rejected, &cloudv1.RejectedBatch{AgentId: b.AgentId, Seq: b.Seq, Reason: "unknown agent"})
			case fc.stored[k]:
				ack.Duplicates++
			default:
				fc.stored[k] = true
				ack.Accepted++
			}
		}
		fc.mu.Unlock()
		reply(ack)
	default:
		w.WriteHeader(404)
	}
}

type harness struct {
	sp        *spool.Spool
	site      *sitestate.State
	up        *Uplink
	dir       string
	mu        sync.Mutex
	delivered map[string][]uint64
}

// Delivered records receipts as ingress would push them to agents.
func (h *harness) Delivered(agent string, seqs []uint64) {
	h.mu.Lock()
	h.delivered[agent] = append(h.delivered[agent], seqs...)
	h.mu.Unlock()
}

func (h *harness) deliveredSeqs(agent string) []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := append([]uint64(nil), h.delivered[agent]...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

func start(t *testing.T, srv *httptest.Server, prepare func(*harness)) *harness {
	t.Helper()
	dir := t.TempDir()
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(dir, "spool"), MaxBytes: 1 << 30, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	client, err := cloudclient.New(cloudclient.Options{URL: srv.URL, Fingerprint: identity.Fingerprint(srv.Certificate()), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	site := sitestatetest.New(t, sitestatetest.Tenant("t1"))
	h := &harness{sp: sp, site: site, dir: dir, delivered: map[string][]uint64{}}
	h.up = New(Options{
		DataDir: dir, EnrollmentToken: "tok", Name: "relay-test",
		MaxUploadBytes: 2048, MaxUploadAge: 20 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		PollWait: 10 * time.Millisecond, Logger: quiet(),
	}, Deps{Spool: sp, Client: client, Site: site, Receipts: h})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sp.Run(ctx) }()
	if prepare != nil {
		prepare(h)
	}
	wg.Add(1)
	go func() { defer wg.Done(); h.up.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); sp.Close() })
	return h
}

func fill(t *testing.T, sp *spool.Spool, agent string, from, to uint64) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		prio := agentv1.Priority(1 + seq%3)
		r, err := sp.Append(context.Background(), &agentv1.EventBatch{AgentId: agent, Seq: seq, Priority: prio, Events: [][]byte{[]byte(`{"event":{"kind":"event"},"message":"hello hello hello hello"}`)}})
		if err != nil || r != spool.Spooled {
			t.Fatalf("append %d: %v %v", seq, r, err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func TestUploadsAndReceipts(t *testing.T) {
	tests := []struct {
		name   string
		faults []string
		reject []uint64
	}{
		{"healthy", nil, nil},
		{"503 then 429 then drop", []string{"503", "429", "drop", "503"}, nil},
		{"rejected batch", nil, []uint64{7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc, srv := newFakeCloud(t)
			fc.faults = tt.faults
			for _, s := range tt.reject {
				fc.reject[s] = true
			}
			h := start(t, srv, func(h *harness) { fill(t, h.sp, "agent-a", 1, 60) })
			waitFor(t, "spool drained", func() bool { return h.sp.Stats().Batches == 0 })
			waitFor(t, "receipts delivered", func() bool { return len(h.deliveredSeqs("agent-a")) == 60 })
			if got, want := fmt.Sprint(h.deliveredSeqs("agent-a")), fmt.Sprint(seqRange(1, 60)); got != want {
				t.Fatalf("delivered: got %s, want %s", got, want)
			}
			pending, _ := h.sp.PendingReceipts("agent-a")
			if len(pending) != 60 {
				t.Fatalf("durable receipts: got %d, want 60", len(pending))
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			if got, want := len(fc.stored), 60-len(tt.reject); got != want {
				t.Fatalf("cloud stored %d batches, want %d", got, want)
			}
			// Every failed attempt was retried with the same upload id.
			if n := len(tt.faults); n > 0 {
				for i := 1; i <= n; i++ {
					if fc.uploadIDs[i] != fc.uploadIDs[0] {
						t.Fatalf("attempt %d upload id: got %s, want %s (same upload)", i, fc.uploadIDs[i], fc.uploadIDs[0])
					}
				}
			}
			for i, p := range fc.calls {
				if p != "/v1/relay/enroll" && fc.auth[i] != "Bearer r1.sec" {
					t.Fatalf("%s auth: got %q, want Bearer r1.sec", p, fc.auth[i])
				}
			}
			if _, err := os.Stat(filepath.Join(h.dir, "enrollment.pb")); err != nil {
				t.Fatalf("enrollment.pb: %v", err)
			}
		})
	}
}

func TestOfflineRegistrationReconciledBeforeUpload(t *testing.T) {
	fc, srv := newFakeCloud(t)
	h := start(t, srv, func(h *harness) {
		err := h.site.PutAgent(sitestate.AgentRecord{AgentID: "agent-off", TenantID: "t1", Pending: true, RegisteredAt: time.Now()},
			&cloudv1.RegisterAgentRequest{AgentId: "agent-off", RegistrationKey: "k"})
		if err != nil {
			t.Fatal(err)
		}
		fill(t, h.sp, "agent-off", 1, 3)
	})
	waitFor(t, "spool drained", func() bool { return h.sp.Stats().Batches == 0 })
	rec, err := h.site.Agent("agent-off")
	if err != nil || rec.Pending || rec.GroupID != "g1" {
		t.Fatalf("record after reconcile: got %+v %v, want group g1, not pending", rec, err)
	}
	if p := h.site.PendingRegistrations(); len(p) != 0 {
		t.Fatalf("after reconcile: %d registrations still pending, want none", len(p))
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	reg, up := -1, -1
	for i, p := range fc.calls {
		if p == "/v1/agents/register" && reg < 0 {
			reg = i
		}
		if p == "/v1/ingest/upload" && up < 0 {
			up = i
		}
	}
	if reg < 0 || up < 0 || reg > up {
		t.Fatalf("calls %v: want register before the first upload", fc.calls)
	}
}

func TestControlPollCachesKeyHashes(t *testing.T) {
	_, srv := newFakeCloud(t)
	h := start(t, srv, nil)
	waitFor(t, "key hashes in the site state", func() bool {
		v, keys := h.site.RegistrationKeys()
		return v == 3 && len(keys) == 1
	})
	waitFor(t, "cloud reachable", func() bool { return h.up.Status().CloudReachable })
	if got := h.site.GroupTier("g1"); got != "server" {
		t.Errorf("policy tier of g1: got %q, want server", got)
	}
	if got := h.site.GroupTier("g2"); got != "" {
		t.Errorf("policy tier of unknown g2: got %q, want empty", got)
	}
}
