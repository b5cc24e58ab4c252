package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/config"
)

// cloudStub accepts everything the relay sends.
func cloudStub(t *testing.T) *httptest.Server { return cloudStubWith(t, stubOptions{}) }

// relayConfig is a relay on loopback ports enrolling with cloud, with what
// edit changes, finished and validated.
func relayConfig(t *testing.T, cloud *httptest.Server, edit func(*config.Config)) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.AdminListen = "127.0.0.1:0"
	cfg.Cloud.URL = cloud.URL
	cfg.Cloud.Fingerprint = identity.Fingerprint(cloud.Certificate())
	cfg.Cloud.EnrollmentToken = "tok"
	if edit != nil {
		edit(&cfg)
	}
	cfg.Finish()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// withDNS turns the relay's DNS server on, on a loopback port, answering
// loopback clients only from its overrides.
func withDNS(cfg *config.Config) {
	cfg.DNS.Enabled = true
	cfg.DNS.Listen = "127.0.0.1:0"
	cfg.DNS.AllowNetworks = []string{"127.0.0.0/8"}
	cfg.DNS.RefuseUnknown = true
}

// stubOptions change what cloudStub answers.
type stubOptions struct {
	// poll is the control state answered; nil (or holding nil): version 1
	// and nothing else. Tests change it to change the cloud's state.
	poll *atomic.Pointer[cloudv1.ControlPollResponse]
	// down, while true, makes every call fail as an overloaded cloud does.
	down *atomic.Bool
}

func cloudStubWith(t *testing.T, opt stubOptions) *httptest.Server {
	var mu sync.Mutex
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if opt.down != nil && opt.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var m proto.Message
		switch r.URL.Path {
		case "/v1/relay/enroll":
			m = &cloudv1.EnrollResponse{RelayId: "relay-9", TenantId: "t1", SiteId: "s1", RelaySecret: "x"}
		case "/v1/agents/register":
			req := &cloudv1.RegisterAgentRequest{}
			proto.Unmarshal(body, req)
			if req.RegistrationKey != "good-key" {
				w.WriteHeader(403)
				b, _ := proto.Marshal(&cloudv1.Status{Code: cloudv1.Status_CODE_KEY_INVALID})
				w.Write(b)
				return
			}
			m = &cloudv1.RegisterAgentResponse{AgentId: req.AgentId, TenantId: "t1", GroupId: "g1"}
		case "/v1/control/poll":
			select {
			case <-r.Context().Done():
			case <-time.After(50 * time.Millisecond):
			}
			m = &cloudv1.ControlPollResponse{Version: 1}
			if opt.poll != nil && opt.poll.Load() != nil {
				m = opt.poll.Load()
			}
		case "/v1/ingest/upload":
			dec, _ := zstd.NewReader(nil)
			raw, _ := dec.DecodeAll(body, nil)
			dec.Close()
			req := &cloudv1.UploadRequest{}
			proto.Unmarshal(raw, req)
			mu.Lock()
			m = &cloudv1.UploadAck{UploadId: req.UploadId, Accepted: uint32(len(req.Batches))}
			mu.Unlock()
		default:
			w.WriteHeader(404)
			return
		}
		b, _ := proto.Marshal(m)
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRelayEndToEnd(t *testing.T) {
	cloud := cloudStub(t)
	cfg := relayConfig(t, cloud, func(c *config.Config) { c.Uplink.MaxUploadAge = 10 * time.Millisecond })
	d, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	// Wait for enrollment so the cloud registers the agent.
	waitFor(t, "enrolled", func() bool { return status(t, d).RelayID == "relay-9" })

	id, _ := identity.LoadOrCreate(t.TempDir())
	conn, _, cr, f := helloAgent(t, d, id, "good-key")
	defer conn.CloseWithError(0, "")
	if f.GetHelloReply().GetGroupId() != "g1" || f.GetHelloReply().GetRelayId() != "relay-9" {
		t.Fatalf("hello: got %v, want reply with group g1, relay relay-9", f)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	lane, _ := conn.OpenStreamSync(dctx)
	lr := framing.NewReader(lane, 0)
	for seq := uint64(1); seq <= 5; seq++ {
		framing.Write(lane, &agentv1.Frame{Body: &agentv1.Frame_EventBatch{EventBatch: &agentv1.EventBatch{
			AgentId: id.ID(), Seq: seq, Priority: agentv1.Priority_PRIORITY_SECURITY, Events: [][]byte{[]byte(`{"a":1}`)}}}})
	}
	for seq := uint64(1); seq <= 5; seq++ {
		f := &agentv1.Frame{}
		if err := lr.Next(f); err != nil || f.GetBatchAck().GetStatus() != agentv1.BatchAck_STATUS_SPOOLED {
			t.Fatalf("ack %d: got %v %v, want SPOOLED", seq, f, err)
		}
	}
	var got []uint64
	for len(got) < 5 {
		f := &agentv1.Frame{}
		if err := cr.Next(f); err != nil {
			t.Fatal(err)
		}
		got = append(got, f.GetDelivered().GetSeqs()...)
	}
	if fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Fatalf("delivered: got %v, want [1 2 3 4 5]", got)
	}
	st := status(t, d)
	if st.AgentsConnected != 1 || st.Spool.Batches != 0 || st.Uplink.UploadedBatches != 5 || st.ReceiptsPending != 5 || !st.Uplink.CloudReachable {
		t.Fatalf("status: got %+v", st)
	}
	res, err := http.Get("http://" + d.AdminAddr() + "/readyz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("readyz: got %v %v, want 200", res, err)
	}
	res.Body.Close()
}

func status(t *testing.T, d *Daemon) Status {
	t.Helper()
	res, err := http.Get("http://" + d.AdminAddr() + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var s Status
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
