package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/internal/identity"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

// benchCloud accepts everything a relay sends.
func benchCloud(b *testing.B) *httptest.Server {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m proto.Message
		switch r.URL.Path {
		case "/v1/relay/enroll":
			m = &cloudv1.EnrollResponse{RelayId: "relay-b", TenantId: "t1", SiteId: "s1", RelaySecret: "x"}
		case "/v1/agents/register":
			req := &cloudv1.RegisterAgentRequest{}
			proto.Unmarshal(body, req)
			m = &cloudv1.RegisterAgentResponse{AgentId: req.AgentId, TenantId: "t1", GroupId: "g1"}
		case "/v1/control/poll":
			select {
			case <-r.Context().Done():
			case <-time.After(time.Second):
			}
			m = &cloudv1.ControlPollResponse{Version: 1}
		case "/v1/ingest/upload":
			dec, _ := zstd.NewReader(nil)
			raw, _ := dec.DecodeAll(body, nil)
			dec.Close()
			req := &cloudv1.UploadRequest{}
			proto.Unmarshal(raw, req)
			m = &cloudv1.UploadAck{UploadId: req.UploadId, Accepted: uint32(len(req.Batches))}
		default:
			w.WriteHeader(404)
			return
		}
		out, _ := proto.Marshal(m)
		w.Write(out)
	}))
	b.Cleanup(srv.Close)
	return srv
}

var relayBin struct {
	once sync.Once
	path string
	err  error
}

// relayBinary is $GATEHOUSE_BIN/gatehouse-relay (make bench), else built once.
func relayBinary(b *testing.B) string {
	relayBin.once.Do(func() {
		if dir := os.Getenv("GATEHOUSE_BIN"); dir != "" {
			relayBin.path = filepath.Join(dir, "gatehouse-relay")
			return
		}
		dir, err := os.MkdirTemp("", "gatehouse-bench")
		if err != nil {
			relayBin.err = err
			return
		}
		relayBin.path = filepath.Join(dir, "gatehouse-relay")
		out, err := exec.Command("go", "build", "-o", relayBin.path, "github.com/gatehouse/gatehouse/relay/cmd/gatehouse-relay").CombinedOutput()
		if err != nil {
			relayBin.err = fmt.Errorf("build relay: %v: %s", err, out)
		}
	})
	if relayBin.err != nil {
		b.Fatal(relayBin.err)
	}
	return relayBin.path
}

func freePort(b *testing.B) string {
	for {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		addr := u.LocalAddr().String()
		t, err := net.Listen("tcp", addr)
		u.Close()
		if err == nil {
			t.Close()
			return addr
		}
	}
}

// startRealRelay runs the real relay (ingress, Badger spool, uplink) against
// a stub cloud and returns its agent address and fingerprint.
func startRealRelay(b *testing.B) (addr, fp string) {
	cloud := benchCloud(b)
	dir := b.TempDir()
	addr = freePort(b)
	admin := freePort(b)
	cfg := fmt.Sprintf("name: bench\ndata_dir: %s\nlisten: %q\nadmin_listen: %q\nlog: {level: error}\ncloud: {url: %q, fingerprint: %q, enrollment_token: tok}\n",
		dir, addr, admin, cloud.URL, identity.Fingerprint(cloud.Certificate()))
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(relayBinary(b), "--config", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/v1/status")
		if err == nil {
			var st struct {
				Fingerprint string `json:"fingerprint"`
				RelayID     string `json:"relay_id"`
			}
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if st.Fingerprint != "" && st.RelayID != "" {
				return addr, st.Fingerprint
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("relay did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkTransport measures the real agent transport against the real
// relay (subprocess: ingress + Badger spool + uplink to a stub cloud) over
// QUIC, TLS/TCP and TLS/TCP through tinyproxy: batches/s and events/s
// pipelined, and the ack ("spooled") latency of one batch at a time.
func BenchmarkTransport(b *testing.B) {
	const eventsPerBatch = 50
	event := []byte(`{"@timestamp":"2025-01-01T00:00:00Z","event":{"kind":"event","category":["process"],"type":["start"],"action":"exec"},"host":{"hostname":"bench-host"},"process":{"pid":4242,"executable":"/usr/bin/example","args":["example","--flag"]},"message":"benchmark event"}`)
	events := make([][]byte, eventsPerBatch)
	for i := range events {
		events[i] = event
	}
	for _, mode := range []string{"quic", "tcp", "proxy"} {
		b.Run(mode, func(b *testing.B) {
			addr, fp := startRealRelay(b)
			dir, id, r := newAgentDir(b, 1<<30)
			opts := Options{
				Relays: []string{addr}, Fingerprint: fp, RegistrationKey: "k", DataDir: dir, Hostname: "bench",
				Version: "bench", Identity: id, Ring: r, HeartbeatInterval: time.Hour, RedeliverAfter: time.Hour,
				Mode: ModeQUIC,
			}
			switch mode {
			case "tcp":
				opts.Mode = ModeTCP
			case "proxy":
				_, port, _ := net.SplitHostPort(addr)
				p, _ := url.Parse("http://user:pass@" + startTinyproxy(b, port))
				opts.Mode, opts.Proxy = ModeTCP, p
			}
			c, err := New(opts)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { c.Run(ctx) })
			defer func() { cancel(); wg.Wait() }()
			acked := func() int { st := r.Stats(); return st.Spooled + int(st.DeliveredTotal) }
			waitAcked := func(n int) {
				deadline := time.Now().Add(time.Minute)
				for acked() < n {
					if time.Now().After(deadline) {
						b.Fatalf("acked %d of %d; status %+v", acked(), n, c.Status())
					}
					runtime.Gosched()
				}
			}
			// Connect (and register) before measuring.
			r.Append(agentv1.Priority_PRIORITY_BULK, events, nil)
			waitAcked(1)
			if got := c.Status().Transport; got != map[string]string{"quic": TransportQUIC, "tcp": TransportTCP, "proxy": TransportTCPProxy}[mode] {
				b.Fatalf("transport: got %q for %s", got, mode)
			}

			// Ack latency, one batch at a time.
			const samples = 200
			lat := make([]time.Duration, 0, samples)
			for range samples {
				n := acked()
				start := time.Now()
				r.Append(agentv1.Priority_PRIORITY_SECURITY, events[:1], nil)
				waitAcked(n + 1)
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)

			b.ResetTimer()
			base := acked()
			start := time.Now()
			for range b.N {
				if _, err := r.Append(agentv1.Priority_PRIORITY_BULK, events, nil); err != nil {
					b.Fatal(err)
				}
			}
			waitAcked(base + b.N)
			el := time.Since(start).Seconds()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el, "batches/s")
			b.ReportMetric(float64(b.N*eventsPerBatch)/el, "events/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ack-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ack-ms")
		})
	}
}

// BenchmarkSwitchover measures how long the agent takes to be on TCP when
// UDP starts being dropped, against the real relay: mid-session (QUIC
// connected, batches flowing; the stall watcher moves it) and for an agent
// that connects with UDP already dropped (the connect race). Each op is one
// fresh agent; switch-ms is the mean from the cut to status "tcp".
func BenchmarkSwitchover(b *testing.B) {
	addr, fp := startRealRelay(b)
	for _, mode := range []string{"mid-session", "fresh-connect"} {
		b.Run(mode, func(b *testing.B) {
			var total time.Duration
			for range b.N {
				total += switchOnce(b, addr, fp, mode == "mid-session")
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "switch-ms")
		})
	}
}

// switchOnce runs one agent through a pathCutter and returns the time from
// the UDP cut to the agent's status saying tcp.
func switchOnce(b *testing.B, addr, fp string, midSession bool) time.Duration {
	b.StopTimer()
	cutter := newPathCutter(b, addr)
	dir, id, r := newAgentDir(b, 1<<26)
	c, err := New(Options{
		Relays: []string{cutter.addr}, Fingerprint: fp, RegistrationKey: "k", DataDir: dir, Hostname: "bench",
		Version: "bench", Identity: id, Ring: r, HeartbeatInterval: time.Hour, RedeliverAfter: time.Hour,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	event := [][]byte{[]byte(`{"message":"switchover"}`)}
	waitStatus := func(what string, cond func(Status) bool) {
		deadline := time.Now().Add(time.Minute)
		for !cond(c.Status()) {
			if time.Now().After(deadline) {
				b.Fatalf("waiting for %s; status %+v", what, c.Status())
			}
			time.Sleep(time.Millisecond)
		}
	}
	if !midSession {
		cutter.cutUDP()
	}
	b.StartTimer()
	start := time.Now()
	wg.Go(func() { c.Run(ctx) })
	if midSession {
		waitStatus("quic", func(s Status) bool { return s.Transport == TransportQUIC })
		stop := make(chan struct{})
		wg.Go(func() { // batches flowing, as from a busy host
			everyUntil(stop, 10*time.Millisecond, func() { r.Append(agentv1.Priority_PRIORITY_BULK, event, nil) })
		})
		defer close(stop)
		time.Sleep(100 * time.Millisecond)
		cutter.cutUDP()
		start = time.Now()
	}
	waitStatus("tcp", func(s Status) bool { return s.State == StateConnected && s.Transport == TransportTCP })
	took := time.Since(start)
	b.StopTimer()
	return took
}
