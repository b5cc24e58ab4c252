package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/cloud/adminapi"
	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/internal/testkit"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

// startServer runs a real server on :0 ports until the test ends.
func startServer(t *testing.T, clk clockwork.Clock) *Server {
	t.Helper()
	cfg := Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.AdminListen = "127.0.0.1:0"
	cfg.TLSHosts = []string{"cloud.example.test"}
	s, err := New(cfg, Deps{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		s.Close()
	})
	testkit.WaitFor(t, "readyz", func() bool {
		resp, err := http.Get("http://" + s.AdminAddr() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return s
}

// relayClient calls the relay API over HTTPS, pinning the cloud's key from
// the fingerprint file the server wrote.
type relayClient struct {
	t    *testing.T
	base string
	cred string
	http *http.Client
}

func newRelayClient(t *testing.T, s *Server) *relayClient {
	return newRelayClientAt(t, s.cfg.DataDir, s.RelayAddr())
}

func newRelayClientAt(t *testing.T, dataDir, addr string) *relayClient {
	fp, err := os.ReadFile(filepath.Join(dataDir, "tls", "fingerprint"))
	if err != nil {
		t.Fatal(err)
	}
	pin, err := identity.NormalizeFingerprint(string(fp))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, VerifyPeerCertificate: identity.VerifyPinned(pin), MinVersion: tls.VersionTLS13,
	}}}
	t.Cleanup(c.CloseIdleConnections)
	return &relayClient{t: t, base: "https://" + addr, http: c}
}

func (r *relayClient) call(path string, req, resp proto.Message, zstdBody bool) int {
	r.t.Helper()
	b, _ := proto.Marshal(req)
	hreq, _ := http.NewRequest("POST", r.base+path, nil)
	if zstdBody {
		enc, _ := zstd.NewWriter(nil)
		b = enc.EncodeAll(b, nil)
		enc.Close()
		hreq.Header.Set("Content-Encoding", "zstd")
	}
	hreq.Body = io.NopCloser(bytes.NewReader(b))
	hreq.ContentLength = int64(len(b))
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	if r.cred != "" {
		hreq.Header.Set("Authorization", "Bearer "+r.cred)
	}
	hresp, err := r.http.Do(hreq)
	if err != nil {
		r.t.Fatal(err)
	}
	defer hresp.Body.Close()
	body, _ := io.ReadAll(hresp.Body)
	if hresp.StatusCode == 200 && resp != nil {
		if err := proto.Unmarshal(body, resp); err != nil {
			r.t.Fatal(err)
		}
	}
	return hresp.StatusCode
}

func TestEndToEnd(t *testing.T) {
	s := startServer(t, nil)
	ctx := context.Background()
	admin := adminapi.NewClient("http://"+s.AdminAddr(), s.AdminToken())

	// Files the relays and operators need.
	tok, err := os.ReadFile(filepath.Join(s.cfg.DataDir, "admin.token"))
	if err != nil || strings.TrimSpace(string(tok)) != s.AdminToken() {
		t.Fatalf("admin.token: got %q, %v", tok, err)
	}
	if fi, _ := os.Stat(filepath.Join(s.cfg.DataDir, "admin.token")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token mode: got %v, want 0600", fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(s.cfg.DataDir, "tls", "cert.pem")); err != nil {
		t.Fatal(err)
	}

	tn, err := admin.CreateTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	site, err := admin.CreateSite(ctx, tn.ID, "hq")
	if err != nil {
		t.Fatal(err)
	}
	grp, err := admin.CreateGroup(ctx, tn.ID, "servers")
	if err != nil {
		t.Fatal(err)
	}
	key, err := admin.CreateRegistrationKey(ctx, tn.ID, grp.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := key.ExpiresAt.Sub(key.CreatedAt); got != 8760*time.Hour {
		t.Fatalf("key validity: got %v, want 8760h", got)
	}
	et, err := admin.CreateEnrollmentToken(ctx, tn.ID, site.ID, 0)
	if err != nil {
		t.Fatal(err)
	}

	rc := newRelayClient(t, s)
	var er cloudv1.EnrollResponse
	if code := rc.call("/v1/relay/enroll", &cloudv1.EnrollRequest{EnrollmentToken: et.Token, RelayName: "r1", Hostname: "dmz1"}, &er, false); code != 200 {
		t.Fatalf("enroll: got %d", code)
	}
	rc.cred = er.RelayId + "." + er.RelaySecret
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	agentID := identity.AgentID(pub)
	if code := rc.call("/v1/agents/register", &cloudv1.RegisterAgentRequest{AgentId: agentID, PublicKey: pub, RegistrationKey: key.Key, Hostname: "web1", AgentVersion: "1.0.0", Os: "linux"}, nil, false); code != 200 {
		t.Fatalf("register: got %d", code)
	}
	up := &cloudv1.UploadRequest{UploadId: "u1", Batches: []*agentv1.EventBatch{
		{AgentId: agentID, Seq: 1, Events: [][]byte{[]byte(`{"event":{"kind":"event"}}`), []byte(`{"n":2}`)}},
		{AgentId: agentID, Seq: 2, Events: [][]byte{[]byte(`{"n":3}`)}},
	}}
	var ack cloudv1.UploadAck
	if code := rc.call("/v1/ingest/upload", up, &ack, true); code != 200 || ack.Accepted != 2 {
		t.Fatalf("upload: got %d %v", code, &ack)
	}
	if code := rc.call("/v1/ingest/upload", up, &ack, true); code != 200 || ack.Duplicates != 2 {
		t.Fatalf("upload again: got %d %v, want 2 duplicates", code, &ack)
	}

	if n, err := admin.CountEvents(ctx, tn.ID, agentID); err != nil || n != 3 {
		t.Fatalf("count: got %d, %v, want 3", n, err)
	}
	page, err := admin.QueryEvents(ctx, tn.ID, "", 1, 10)
	if err != nil || len(page.Events) != 2 || page.Next != 3 || string(page.Events[1].Event) != `{"n":3}` {
		t.Fatalf("query after 1: got %+v, %v", page, err)
	}
	agents, err := admin.ListAgents(ctx, tn.ID)
	if err != nil || len(agents) != 1 || agents[0].Hostname != "web1" || agents[0].RelayID != er.RelayId {
		t.Fatalf("agents: got %+v, %v", agents, err)
	}
	relays, err := admin.ListRelays(ctx, tn.ID)
	if err != nil || len(relays) != 1 || relays[0].SiteID != site.ID {
		t.Fatalf("relays: got %+v, %v", relays, err)
	}
	st, err := admin.Stats(ctx)
	if want := (adminapi.Stats{Tenants: 1, Agents: 1, Events: 3, Batches: 2, DuplicateBatches: 2}); err != nil || st != want {
		t.Fatalf("stats: got %+v, %v, want %+v", st, err, want)
	}

	// Errors.
	var apiErr *adminapi.Error
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"wrong token", func() error {
			_, err := adminapi.NewClient("http://"+s.AdminAddr(), "nope").ListTenants(ctx)
			return err
		}(), 401},
		{"unknown tenant", func() error { _, err := admin.ListAgents(ctx, "tn_nope"); return err }(), 404},
		{"duplicate tenant", func() error { _, err := admin.CreateTenant(ctx, "acme"); return err }(), 409},
		{"unknown group", func() error { _, err := admin.CreateRegistrationKey(ctx, tn.ID, "grp_nope", 0); return err }(), 404},
		{"bad limit", func() error { _, err := admin.QueryEvents(ctx, tn.ID, "", 0, 20000); return err }(), 400},
	}
	for _, tc := range tests {
		if !errors.As(tc.err, &apiErr) || apiErr.StatusCode != tc.want {
			t.Errorf("%s: got %v, want HTTP %d", tc.name, tc.err, tc.want)
		}
	}

	// Metrics are on the admin listener.
	resp, err := http.Get("http://" + s.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`gatehouse_cloud_batches_total{result="duplicate"} 2`, "gatehouse_cloud_events_total 3", "gatehouse_cloud_uploads_total 2"} {
		if !bytes.Contains(mb, []byte(want)) {
			t.Errorf("metrics: missing %q", want)
		}
	}
}

func TestSuccessorJob(t *testing.T) {
	clk := clockwork.NewFakeClockAt(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s := startServer(t, clk)
	ctx := context.Background()
	admin := adminapi.NewClient("http://"+s.AdminAddr(), s.AdminToken())
	tn, _ := admin.CreateTenant(ctx, "acme")
	grp, _ := admin.CreateGroup(ctx, tn.ID, "g")
	k, err := admin.CreateRegistrationKey(ctx, tn.ID, grp.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Jump to 29 days before expiry once the job waits on the clock; its
	// next hourly run must make a successor.
	if err := clk.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(k.ExpiresAt.Sub(clk.Now()) - 29*24*time.Hour)
	var keys []adminapi.RegistrationKey
	testkit.WaitFor(t, "successor key", func() bool {
		keys, _ = admin.ListRegistrationKeys(ctx, tn.ID)
		return len(keys) == 2
	})
	var succ adminapi.RegistrationKey
	for _, x := range keys {
		if x.ID != k.ID {
			succ = x
		}
	}
	if succ.SuccessorOf != k.ID || succ.GroupID != grp.ID {
		t.Fatalf("got successor %+v, want successor_of %s in group %s", succ, k.ID, grp.ID)
	}
	// More hours pass: still exactly one successor.
	for range 3 {
		clk.Advance(time.Hour)
	}
	if err := clk.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if keys, _ = admin.ListRegistrationKeys(ctx, tn.ID); len(keys) != 2 {
		t.Fatalf("got %d keys, want 2", len(keys))
	}
}

func TestRestartKeepsIdentityAndToken(t *testing.T) {
	cfg := Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	s1, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	fp, tok := s1.Fingerprint(), s1.AdminToken()
	if _, err := s1.Store().CreateTenant("acme"); err != nil {
		t.Fatal(err)
	}
	s1.Close()
	s2, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Fingerprint() != fp || s2.AdminToken() != tok {
		t.Fatalf("after restart: fingerprint/token changed")
	}
	if ts, _ := s2.Store().ListTenants(); len(ts) != 1 {
		t.Fatalf("after restart: got %d tenants, want 1", len(ts))
	}
}
