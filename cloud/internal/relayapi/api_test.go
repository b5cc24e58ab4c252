package relayapi

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/cloud/internal/store"
	"github.com/gatehouse/gatehouse/internal/identity"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

type env struct {
	st      *store.Store
	clk     *clockwork.FakeClock
	srv     *httptest.Server
	client  *http.Client
	metrics *Metrics
	tenant  store.Tenant
	group   store.Group
	site    store.Site
	key     store.RegistrationKey
	cred    string // relay bearer credential
}

func newEnv(t *testing.T, maxBody, maxDecompressed int64) *env {
	t.Helper()
	e := &env{clk: clockwork.NewFakeClockAt(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))}
	var err error
	if e.st, err = store.Open(store.Options{Dir: t.TempDir(), Clock: e.clk}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	e.metrics = NewMetrics(prometheus.NewRegistry())
	api, err := New(Config{Store: e.st, Metrics: e.metrics, MaxBodyBytes: maxBody, MaxDecompressedBytes: maxDecompressed, MaxPollWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(api.Close)
	id, err := identity.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := id.Certificate("gatehouse-cloud", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(api)
	e.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	e.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, VerifyPeerCertificate: identity.VerifyPinned(id.Fingerprint()),
	}}}
	t.Cleanup(e.client.CloseIdleConnections)

	if e.tenant, err = e.st.CreateTenant("acme"); err != nil {
		t.Fatal(err)
	}
	e.group, _ = e.st.CreateGroup(e.tenant.ID, "workstations")
	e.site, _ = e.st.CreateSite(e.tenant.ID, "hq")
	if e.key, err = e.st.CreateRegistrationKey(e.tenant.ID, e.group.ID, 0); err != nil {
		t.Fatal(err)
	}
	tok, _, err := e.st.CreateEnrollmentToken(e.tenant.ID, e.site.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var er cloudv1.EnrollResponse
	if code := e.call(t, "/v1/relay/enroll", "", &cloudv1.EnrollRequest{EnrollmentToken: tok, RelayName: "r1", Hostname: "dmz1"}, &er); code != 200 {
		t.Fatalf("enroll: got %d, want 200", code)
	}
	if er.TenantId != e.tenant.ID || er.SiteId != e.site.ID || er.RelaySecret == "" {
		t.Fatalf("enroll: got %v", &er)
	}
	e.cred = er.RelayId + "." + er.RelaySecret
	// The token is single use.
	if code := e.call(t, "/v1/relay/enroll", "", &cloudv1.EnrollRequest{EnrollmentToken: tok}, nil); code != 401 {
		t.Fatalf("enroll again: got %d, want 401", code)
	}
	return e
}

// post sends raw bytes and returns the status and body.
func (e *env) post(t *testing.T, path, cred, encoding string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		var st cloudv1.Status
		if err := proto.Unmarshal(b, &st); err != nil || st.Code == cloudv1.Status_CODE_UNSPECIFIED {
			t.Fatalf("%s: status %d without a Status body (%v): %q", path, resp.StatusCode, err, b)
		}
	}
	return resp.StatusCode, b
}

func (e *env) call(t *testing.T, path, cred string, req, resp proto.Message) int {
	t.Helper()
	b, _ := proto.Marshal(req)
	code, body := e.post(t, path, cred, "", b)
	if code == 200 && resp != nil {
		if err := proto.Unmarshal(body, resp); err != nil {
			t.Fatal(err)
		}
	}
	return code
}

func statusCode(t *testing.T, body []byte) cloudv1.Status_Code {
	var st cloudv1.Status
	proto.Unmarshal(body, &st)
	return st.Code
}

func newAgentKey(t *testing.T) (string, ed25519.PublicKey) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return identity.AgentID(pub), pub
}

func TestRegister(t *testing.T) {
	e := newEnv(t, 0, 0)
	short, _ := e.st.CreateRegistrationKey(e.tenant.ID, e.group.ID, time.Hour)
	early, earlyPub := newAgentKey(t)
	if code := e.call(t, "/v1/agents/register", e.cred, &cloudv1.RegisterAgentRequest{AgentId: early, PublicKey: earlyPub, RegistrationKey: short.Key}, nil); code != 200 {
		t.Fatalf("register with short key: got %d, want 200", code)
	}
	e.clk.Advance(2 * time.Hour) // short key now expired

	other := setupOtherTenant(t, e)
	id, pub := newAgentKey(t)
	id2, pub2 := newAgentKey(t)
	tests := []struct {
		name     string
		cred     string
		req      *cloudv1.RegisterAgentRequest
		wantHTTP int
		wantCode cloudv1.Status_Code
	}{
		{"valid", e.cred, &cloudv1.RegisterAgentRequest{AgentId: id, PublicKey: pub, RegistrationKey: e.key.Key, Hostname: "pc1"}, 200, 0},
		{"invalid key", e.cred, &cloudv1.RegisterAgentRequest{AgentId: id2, PublicKey: pub2, RegistrationKey: "ghk_wrong"}, 403, cloudv1.Status_CODE_KEY_INVALID},
		{"expired key", e.cred, &cloudv1.RegisterAgentRequest{AgentId: id2, PublicKey: pub2, RegistrationKey: short.Key}, 403, cloudv1.Status_CODE_KEY_EXPIRED},
		{"registered, expired key", e.cred, &cloudv1.RegisterAgentRequest{AgentId: early, PublicKey: earlyPub, RegistrationKey: short.Key}, 200, 0},
		{"other tenant's key", e.cred, &cloudv1.RegisterAgentRequest{AgentId: id2, PublicKey: pub2, RegistrationKey: other.Key}, 403, cloudv1.Status_CODE_KEY_INVALID},
		{"id mismatch", e.cred, &cloudv1.RegisterAgentRequest{AgentId: id2, PublicKey: pub, RegistrationKey: e.key.Key}, 400, cloudv1.Status_CODE_BAD_REQUEST},
		{"no auth", "", &cloudv1.RegisterAgentRequest{AgentId: id2, PublicKey: pub2, RegistrationKey: e.key.Key}, 401, cloudv1.Status_CODE_UNAUTHENTICATED},
		{"bad secret", strings.Split(e.cred, ".")[0] + ".nope", &cloudv1.RegisterAgentRequest{AgentId: id2, PublicKey: pub2, RegistrationKey: e.key.Key}, 401, cloudv1.Status_CODE_UNAUTHENTICATED},
	}
	for _, tc := range tests {
		b, _ := proto.Marshal(tc.req)
		code, body := e.post(t, "/v1/agents/register", tc.cred, "", b)
		if code != tc.wantHTTP {
			t.Errorf("%s: got HTTP %d (%s), want %d", tc.name, code, statusCode(t, body), tc.wantHTTP)
			continue
		}
		if code != 200 && statusCode(t, body) != tc.wantCode {
			t.Errorf("%s: got %s, want %s", tc.name, statusCode(t, body), tc.wantCode)
		}
		if code == 200 {
			var r cloudv1.RegisterAgentResponse
			proto.Unmarshal(body, &r)
			if r.TenantId != e.tenant.ID || r.GroupId != e.group.ID {
				t.Errorf("%s: got %v, want tenant %s group %s", tc.name, &r, e.tenant.ID, e.group.ID)
			}
		}
	}
	if code, _ := e.post(t, "/v1/agents/register", e.cred, "", []byte{0xff, 0xff}); code != 400 {
		t.Errorf("bad protobuf: got %d, want 400", code)
	}
}

func setupOtherTenant(t *testing.T, e *env) store.RegistrationKey {
	tn, _ := e.st.CreateTenant("other")
	g, _ := e.st.CreateGroup(tn.ID, "g")
	k, err := e.st.CreateRegistrationKey(tn.ID, g.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func zstdBytes(t *testing.T, b []byte) []byte {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

func uploadBody(t *testing.T, id string, batches ...*agentv1.EventBatch) []byte {
	b, err := proto.Marshal(&cloudv1.UploadRequest{UploadId: id, Batches: batches})
	if err != nil {
		t.Fatal(err)
	}
	return zstdBytes(t, b)
}

func evBatch(agent string, seq uint64, n int) *agentv1.EventBatch {
	b := &agentv1.EventBatch{AgentId: agent, Seq: seq}
	for i := range n {
		b.Events = append(b.Events, fmt.Appendf(nil, `{"event":{"kind":"event"},"n":%d}`, i))
	}
	return b
}

func TestUpload(t *testing.T) {
	e := newEnv(t, 1<<20, 4<<20)
	id, pub := newAgentKey(t)
	if code := e.call(t, "/v1/agents/register", e.cred, &cloudv1.RegisterAgentRequest{AgentId: id, PublicKey: pub, RegistrationKey: e.key.Key}, nil); code != 200 {
		t.Fatalf("register: got %d", code)
	}
	unknown, _ := newAgentKey(t)

	ack := func(body []byte) *cloudv1.UploadAck {
		t.Helper()
		code, b := e.post(t, "/v1/ingest/upload", e.cred, "zstd", body)
		if code != 200 {
			t.Fatalf("upload: got %d %s, want 200", code, statusCode(t, b))
		}
		var a cloudv1.UploadAck
		if err := proto.Unmarshal(b, &a); err != nil {
			t.Fatal(err)
		}
		return &a
	}
	a := ack(uploadBody(t, "u1", evBatch(id, 1, 3), evBatch(id, 2, 2), evBatch(unknown, 1, 1)))
	if a.UploadId != "u1" || a.Accepted != 2 || a.Duplicates != 0 || len(a.Rejected) != 1 || a.Rejected[0].AgentId != unknown {
		t.Fatalf("first upload: got %v, want 2 accepted, unknown agent rejected", a)
	}
	a = ack(uploadBody(t, "u1", evBatch(id, 1, 3), evBatch(id, 2, 2), evBatch(id, 3, 1)))
	if a.Accepted != 1 || a.Duplicates != 2 {
		t.Fatalf("retry: got %v, want 1 accepted, 2 duplicates", a)
	}
	if n, _ := e.st.CountEvents(e.tenant.ID, id); n != 6 {
		t.Fatalf("got %d events stored, want 6", n)
	}

	huge := make([]byte, 8<<20) // compresses to almost nothing, decompresses past 4 MiB
	tests := []struct {
		name     string
		encoding string
		body     []byte
		want     int
	}{
		{"bad zstd", "zstd", []byte("definitely not zstd"), 400},
		{"bad protobuf", "zstd", zstdBytes(t, []byte{0x0a, 0xff, 0xff, 0xff}), 400},
		{"zstd bomb", "zstd", zstdBytes(t, huge), 413},
		{"body too large", "identity", make([]byte, 2<<20), 413},
		{"unknown encoding", "gzip", []byte{1}, 415},
	}
	for _, tc := range tests {
		code, b := e.post(t, "/v1/ingest/upload", e.cred, tc.encoding, tc.body)
		if code != tc.want || statusCode(t, b) != cloudv1.Status_CODE_BAD_REQUEST {
			t.Errorf("%s: got %d %s, want %d CODE_BAD_REQUEST", tc.name, code, statusCode(t, b), tc.want)
		}
	}
	if code, _ := e.post(t, "/v1/ingest/upload", "", "zstd", uploadBody(t, "u2", evBatch(id, 9, 1))); code != 401 {
		t.Errorf("no auth: got %d, want 401", code)
	}
	if got := counterValue(e.metrics.Batches.WithLabelValues("duplicate")); got != 2 {
		t.Errorf("duplicate batches metric: got %v, want 2", got)
	}
	if got := counterValue(e.metrics.Events); got != 6 {
		t.Errorf("events metric: got %v, want 6", got)
	}
	if got := counterValue(e.metrics.RequestErrors.WithLabelValues("/v1/ingest/upload", "413")); got != 2 {
		t.Errorf("413 errors metric: got %v, want 2", got)
	}
}

func TestPoll(t *testing.T) {
	e := newEnv(t, 0, 0)
	var r cloudv1.ControlPollResponse
	if code := e.call(t, "/v1/control/poll", e.cred, &cloudv1.ControlPollRequest{}, &r); code != 200 {
		t.Fatalf("poll: got %d", code)
	}
	if len(r.RegistrationKeys) != 1 || !bytes.Equal(r.RegistrationKeys[0].Sha256, e.key.SHA256) || r.Version == 0 {
		t.Fatalf("poll: got %v, want the tenant's one key", &r)
	}
	// Keys of another tenant never show up, and do not wake a waiting poll
	// with a different answer.
	setupOtherTenant(t, e)
	v := r.Version
	done := make(chan *cloudv1.ControlPollResponse, 1)
	go func() {
		var r2 cloudv1.ControlPollResponse
		b, _ := proto.Marshal(&cloudv1.ControlPollRequest{SinceVersion: v, WaitMs: 10000})
		req, _ := http.NewRequest("POST", e.srv.URL+"/v1/control/poll", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+e.cred)
		resp, err := e.client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			proto.Unmarshal(body, &r2)
		}
		done <- &r2
	}()
	if _, err := e.st.CreateRegistrationKey(e.tenant.ID, e.group.ID, 0); err != nil {
		t.Fatal(err)
	}
	r2 := <-done
	if r2.Version == v || len(r2.RegistrationKeys) != 2 {
		t.Fatalf("long poll: got version %d (was %d) with %d keys, want a new version with 2 keys", r2.Version, v, len(r2.RegistrationKeys))
	}
	for _, k := range r2.RegistrationKeys {
		if k.TenantId != e.tenant.ID {
			t.Fatalf("poll leaked key of tenant %s", k.TenantId)
		}
	}
	// A poll at the current version with a short wait answers the same version.
	var r3 cloudv1.ControlPollResponse
	e.call(t, "/v1/control/poll", e.cred, &cloudv1.ControlPollRequest{SinceVersion: r2.Version, WaitMs: 1}, &r3)
	if r3.Version != r2.Version {
		t.Fatalf("idle poll: got version %d, want %d", r3.Version, r2.Version)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// Enrollment proves the relay key: a bad proof is a bad request, the same
// key may present its used token again (same relay id, new secret), another
// key may not.
func TestEnrollProvesTheRelayKey(t *testing.T) {
	e := newEnv(t, 0, 0)
	tok, _, err := e.st.CreateEnrollmentToken(e.tenant.ID, e.site.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	signed := func(k ed25519.PrivateKey) *cloudv1.EnrollRequest {
		req := &cloudv1.EnrollRequest{EnrollmentToken: tok, RelayName: "r2", Hostname: "dmz2"}
		cloudv1.SignEnrollment(req, k)
		return req
	}
	forged := signed(other)
	forged.RelayPublicKey = key.Public().(ed25519.PublicKey)
	if code := e.call(t, "/v1/relay/enroll", "", forged, nil); code != 400 {
		t.Fatalf("forged proof: got %d, want 400", code)
	}
	var first, again cloudv1.EnrollResponse
	if code := e.call(t, "/v1/relay/enroll", "", signed(key), &first); code != 200 {
		t.Fatalf("enroll: got %d, want 200", code)
	}
	if code := e.call(t, "/v1/relay/enroll", "", signed(key), &again); code != 200 {
		t.Fatalf("same key again: got %d, want 200", code)
	}
	if again.RelayId != first.RelayId || again.RelaySecret == first.RelaySecret {
		t.Fatalf("same key again: got relay %s secret changed %v, want relay %s and a new secret", again.RelayId, again.RelaySecret != first.RelaySecret, first.RelayId)
	}
	if code := e.call(t, "/v1/relay/enroll", "", signed(other), nil); code != 401 {
		t.Fatalf("another key, used token: got %d, want 401", code)
	}
}
