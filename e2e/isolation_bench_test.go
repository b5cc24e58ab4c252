package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gatehouse/gatehouse/e2e/harness"
	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// simulatedAgents connects n registered agents that only say hello and
// stay connected, so the relay serves a realistic number of sessions.
func simulatedAgents(b *testing.B, ctx context.Context, s *testSite, n int) {
	b.Helper()
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			id, err := identity.LoadOrCreate(b.TempDir())
			if err == nil {
				err = holdConnection(ctx, s, id)
			}
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatalf("simulated agent: %v", firstErr)
	}
}

func holdConnection(ctx context.Context, s *testSite, id *identity.Identity) error {
	cert, err := id.Certificate("sim", nil)
	if err != nil {
		return err
	}
	conn, err := quic.DialAddr(ctx, s.relay.Addr, &tls.Config{
		Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
		VerifyPeerCertificate: identity.VerifyPinned(s.fp), NextProtos: []string{framing.ALPN}, MinVersion: tls.VersionTLS13,
	}, &quic.Config{KeepAlivePeriod: 5 * time.Second, MaxIdleTimeout: time.Minute})
	if err != nil {
		return err
	}
	ctrl, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	if err := framing.Write(ctrl, &agentv1.Frame{Body: &agentv1.Frame_Hello{Hello: &agentv1.Hello{
		AgentVersion: "sim", Hostname: "sim", RegistrationKey: s.site.RegistrationKey, Os: "linux",
	}}}); err != nil {
		return err
	}
	f := &agentv1.Frame{}
	if err := framing.NewReader(ctrl, 0).Next(f); err != nil {
		return err
	}
	go func() { // drain pushes until the benchmark's context ends
		rd := framing.NewReader(ctrl, 0)
		for rd.Next(&agentv1.Frame{}) == nil {
		}
	}()
	context.AfterFunc(ctx, func() { conn.CloseWithError(0, "") })
	return nil
}

// BenchmarkIsolationLatency measures the time from the cloud API call
// (isolate, then cancel) to the agent's eBPF programs attached in, or
// detached from, the kernel, with 1,000 simulated agents connected to the
// relay. The programs attach to a child cgroup: the host is never isolated.
func BenchmarkIsolationLatency(b *testing.B) {
	lab := newIsoLab(b)
	s := newSite(b, harness.RelayOptions{})
	simulatedAgents(b, s.ctx, s, 1000)
	dir := filepath.Join(s.dir, "agent-iso")
	a, err := harness.StartAgent(s.ctx, s.bin, dir, harness.AgentOptions{
		Relays: []string{s.relay.Addr}, Fingerprint: s.fp, RegistrationKey: s.site.RegistrationKey,
		Isolation: map[string]any{"cgroup": lab.cgroup, "pin_dir": lab.pinDir},
		LogGlobs:  []string{filepath.Join(dir, "logs", "*.log")},
	})
	if a != nil && a.Proc != nil {
		s.procs = append(s.procs, a.Proc)
	}
	if err != nil {
		b.Fatal(err)
	}
	if err := a.WaitConnected(s.ctx, time.Minute); err != nil {
		b.Fatal(err)
	}
	st, _ := a.Status()
	link := filepath.Join(lab.pinDir, "link_egress")
	enforced := func() bool { _, err := os.Stat(link); return err == nil }
	var lat []time.Duration
	b.ResetTimer()
	for range max(b.N, 10) {
		for _, typ := range []string{"isolate", "cancel_isolation"} {
			want := typ == "isolate"
			start := time.Now()
			if _, err := s.cloud.Admin.CreateAction(s.ctx, s.site.TenantID, st.AgentID, typ, json.RawMessage(`{}`)); err != nil {
				b.Fatal(err)
			}
			for enforced() != want {
				if time.Since(start) > 30*time.Second {
					b.Fatalf("%s not enforced within 30s", typ)
				}
				time.Sleep(time.Millisecond)
			}
			lat = append(lat, time.Since(start))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(1000, "sim-agents")
}
