package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/e2e/harness"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binaries builds the real binaries once per test run (or uses GATEHOUSE_BIN).
func binaries(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("system test: starts the real binaries; skipped in -short mode")
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gatehouse-e2e-bin")
		if err != nil {
			binErr = err
			return
		}
		binDir, binErr = harness.BuildBinaries(dir)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// testSite is a cloud with one tenant and a relay enrolled into its site.
type testSite struct {
	t     testing.TB
	ctx   context.Context
	bin   string
	dir   string
	cloud *harness.Cloud
	site  *harness.Site
	relay *harness.Relay
	fp    string
	procs []*harness.Proc
}

func newSite(t testing.TB, opt harness.RelayOptions) *testSite {
	t.Helper()
	s := newCloudSite(t, 8*time.Minute)
	ctx, bin := s.ctx, s.bin
	tok, err := s.cloud.EnrollmentToken(ctx, s.site)
	if err != nil {
		t.Fatal(err)
	}
	s.relay, err = harness.StartRelay(ctx, bin, filepath.Join(s.dir, "relay-1"), s.cloud, tok, opt)
	if s.relay != nil && s.relay.Proc != nil {
		s.procs = append(s.procs, s.relay.Proc)
	}
	if err != nil {
		t.Fatalf("start relay: %v", err)
	}
	if s.fp, err = s.relay.Fingerprint(); err != nil {
		t.Fatal(err)
	}
	return s
}

// newCloudSite starts a cloud with one tenant, site, group and
// registration key, and no relay; the test ends within timeout.
func newCloudSite(t testing.TB, timeout time.Duration) *testSite {
	t.Helper()
	bin := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	s := &testSite{t: t, ctx: ctx, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.stopAll)
	var err error
	s.cloud, err = harness.StartCloud(ctx, bin, filepath.Join(s.dir, "cloud"))
	if s.cloud != nil && s.cloud.Proc != nil {
		s.procs = append(s.procs, s.cloud.Proc)
	}
	if err != nil {
		t.Fatalf("start cloud: %v", err)
	}
	if s.site, err = s.cloud.Bootstrap(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	return s
}

// agent starts an agent collecting dir/<name>/logs/*.log, and a writer for
// its app.log.
func (s *testSite) agent(name string) (*harness.Agent, *harness.LogWriter) {
	s.t.Helper()
	return s.agentWith(name, nil)
}

// agentWith is agent with options changed by tweak (a place, a proxy).
func (s *testSite) agentWith(name string, tweak func(*harness.AgentOptions)) (*harness.Agent, *harness.LogWriter) {
	s.t.Helper()
	dir := filepath.Join(s.dir, name)
	w, err := harness.NewLogWriter(filepath.Join(dir, "logs", "app.log"), name)
	if err != nil {
		s.t.Fatal(err)
	}
	opt := harness.AgentOptions{
		Relays:          []string{s.relay.Addr},
		Fingerprint:     s.fp,
		RegistrationKey: s.site.RegistrationKey,
		LogGlobs:        []string{filepath.Join(dir, "logs", "*.log")},
	}
	if tweak != nil {
		tweak(&opt)
	}
	a, err := harness.StartAgent(s.ctx, s.bin, dir, opt)
	if a != nil && a.Proc != nil {
		s.procs = append(s.procs, a.Proc)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return a, w
}

func (s *testSite) stopAll() {
	if s.t.Failed() {
		for _, p := range s.procs {
			s.t.Logf("--- last lines of %s (%s):\n%s", p.Name, p.LogPath, p.Tail(40))
		}
	}
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].Stop(10 * time.Second)
	}
}

func allLines(ws ...*harness.LogWriter) []string {
	var all []string
	for _, w := range ws {
		all = append(all, w.Lines()...)
	}
	return all
}

// waitExactlyOnce waits until every line written has reached the cloud and
// the relay and agents hold nothing more to send, then checks that each line
// arrived exactly once.
func (s *testSite) waitExactlyOnce(timeout time.Duration, agents []*harness.Agent, ws ...*harness.LogWriter) {
	s.t.Helper()
	s.waitLinesExactlyOnce(timeout, agents, allLines(ws...))
}

// waitLinesExactlyOnce is waitExactlyOnce for the lines of want.
func (s *testSite) waitLinesExactlyOnce(timeout time.Duration, agents []*harness.Agent, want []string) {
	s.t.Helper()
	var got map[string]int
	err := harness.WaitFor(s.ctx, timeout, "every line delivered", func() (bool, error) {
		var err error
		got, err = s.cloud.Messages(s.ctx, s.site.TenantID)
		if err != nil {
			return false, err
		}
		if n := harness.Delivered(want, got); n < len(want) {
			return false, fmt.Errorf("%d of %d lines delivered", n, len(want))
		}
		return true, nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	// Drained: nothing left in flight that could still arrive twice.
	err = harness.WaitFor(s.ctx, timeout, "relay and agents drained", func() (bool, error) {
		st, err := s.relay.Status(s.ctx)
		if err != nil {
			return false, err
		}
		if st.Spool.Batches != 0 {
			return false, fmt.Errorf("relay spool holds %d batches", st.Spool.Batches)
		}
		for _, a := range agents {
			as, err := a.Status()
			if err != nil {
				return false, err
			}
			if as.Pending != 0 || as.SpooledUndelivered != 0 {
				return false, fmt.Errorf("%s: pending %d, spooled undelivered %d", a.Name, as.Pending, as.SpooledUndelivered)
			}
		}
		return true, nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	got, err = s.cloud.Messages(s.ctx, s.site.TenantID)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := harness.ExactlyOnce(want, got); err != nil {
		s.t.Fatal(err)
	}
	s.t.Logf("%d lines, each delivered exactly once", len(want))
}

// writeFor appends batches of lines every interval until stop is closed.
func writeFor(w *harness.LogWriter, perTick int, every time.Duration, stop <-chan struct{}) <-chan error {
	done := make(chan error, 1)
	go func() {
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				done <- nil
				return
			case <-tk.C:
				if err := w.Write(perTick); err != nil {
					done <- err
					return
				}
			}
		}
	}()
	return done
}
