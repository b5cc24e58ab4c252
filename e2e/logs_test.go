package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/e2e/harness"
)

// logrotate renames app.log to app.log.1 (which the agent's "*.log" does
// not match) while the agent is stopped: on restart the agent finishes
// app.log.1 from its checkpoint, then reads the new app.log; every line
// arrives exactly once; the same after a kill -9. Then a rotated file
// removed before the restart: its unread lines are lost, and the agent says
// so.
func TestLogRotatedWhileAgentStopped(t *testing.T) {
	s := newSite(t, harness.RelayOptions{})
	a, w := s.agent("agent-1")
	if err := w.Write(100); err != nil {
		t.Fatal(err)
	}
	s.waitExactlyOnce(2*time.Minute, []*harness.Agent{a}, w)

	if err := a.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(100); err != nil { // the app goes on writing
		t.Fatal(err)
	}
	if err := w.Rotate("1"); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(100); err != nil { // into the new app.log
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	s.waitExactlyOnce(2*time.Minute, []*harness.Agent{a}, w)
	if msg := "resuming app.log rotated to app.log.1 while stopped at offset"; !a.LogContains(msg) {
		t.Errorf("agent log: want %q\n%s", msg, a.Tail(30))
	}

	// The same after a crash (kill -9): the ring's entries hold the
	// checkpoint even when checkpoints.json lags.
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{func() error { return w.Write(100) }, func() error { return w.Rotate("1") }, func() error { return w.Write(100) }, a.Start} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	s.waitExactlyOnce(2*time.Minute, []*harness.Agent{a}, w)

	// Rotated and removed while stopped: the 50 lines written after the stop
	// are lost, with a warning and a count; the others still arrive once.
	if err := a.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	before := w.Lines()
	if err := w.Write(50); err != nil {
		t.Fatal(err)
	}
	if err := w.Rotate("2"); err != nil {
		t.Fatal(err)
	}
	after := len(w.Lines())
	if err := w.Write(20); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(w.Path + ".2"); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	want := append(before, w.Lines()[after:]...)
	s.waitLinesExactlyOnce(2*time.Minute, []*harness.Agent{a}, want)
	if msg := "removed while the agent was stopped"; !a.LogContains(msg) || !a.LogContains("lost_bytes=") {
		t.Errorf("agent log: want a warning %q with lost_bytes\n%s", msg, a.Tail(30))
	}
	st, err := a.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Logs.LostFiles != 1 {
		t.Errorf("status logs.lost_files: got %d, want 1", st.Logs.LostFiles)
	}
}

// waitLogEvents waits until the cloud holds at least n log-line events and
// returns them all.
func waitLogEvents(t *testing.T, s *testSite, n int) []harness.LogEvent {
	t.Helper()
	var evs []harness.LogEvent
	err := harness.WaitFor(s.ctx, 2*time.Minute, fmt.Sprintf("%d log events", n), func() (bool, error) {
		var err error
		evs, err = s.cloud.LogEvents(s.ctx, s.site.TenantID)
		return err == nil && len(evs) >= n, fmt.Errorf("%d log events (%v)", len(evs), err)
	})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// A 1 MiB line (logs[].max_line_bytes by default) arrives whole as one event
// through ring, batch, frame, relay spool and uplink; a 2 MiB line arrives
// as its first 1 MiB flagged truncated, and the line after it is an event
// of its own.
func TestLongLogLines(t *testing.T) {
	s := newSite(t, harness.RelayOptions{})
	a, w := s.agent("agent-1")
	if err := a.WaitConnected(s.ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	const mib = 1 << 20
	whole := "whole " + strings.Repeat("w", mib-len("whole "))
	long := "long " + strings.Repeat("x", 2*mib-len("long "))
	f, err := os.OpenFile(w.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, l := range []string{"before", whole, long, "after"} {
		buf.WriteString(l + "\n")
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	f.Close()

	evs := waitLogEvents(t, s, 4)
	if len(evs) != 4 {
		t.Fatalf("got %d log events, want 4 (before, 1 MiB, 2 MiB cut, after)", len(evs))
	}
	type sum struct {
		len   int
		head  string
		flags []string
	}
	var got []sum
	for _, e := range evs {
		got = append(got, sum{len(e.Message), e.Message[:min(6, len(e.Message))], e.Flags})
	}
	wantEvs := []sum{{6, "before", nil}, {mib, "whole ", nil}, {mib, "long x", []string{"truncated"}}, {5, "after", nil}}
	for i := range wantEvs {
		if got[i].len != wantEvs[i].len || got[i].head != wantEvs[i].head || !slices.Equal(got[i].flags, wantEvs[i].flags) {
			t.Fatalf("log events: got %+v, want %+v", got, wantEvs)
		}
	}
	if evs[1].Message != whole || evs[2].Message != long[:mib] {
		t.Fatalf("long events' contents differ from the lines written")
	}
	err = harness.WaitFor(s.ctx, time.Minute, "status counts the truncated line", func() (bool, error) {
		st, err := a.Status()
		return err == nil && st.Logs.TruncatedLines == 1 && st.Logs.Lines == 4, fmt.Errorf("logs %+v (%v)", st.Logs, err)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// An agent run by hand (run --config FILE, as the e2e harness does):
// `gatehouse-agent status --config FILE` shows FILE's paths, not the
// packaged ones as missing, and the agent's start says calmly that the host
// is not isolated.
func TestAgentRunByHandWords(t *testing.T) {
	s := newSite(t, harness.RelayOptions{})
	a, _ := s.agent("agent-1")
	if err := a.WaitConnected(s.ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	// status --config: the agent was started by hand from a.Config.
	out, err := exec.CommandContext(s.ctx, filepath.Join(s.bin, "gatehouse-agent"), "status", "--config", a.Config).CombinedOutput()
	if err != nil {
		t.Fatalf("status --config: %v\n%s", err, out)
	}
	text := string(out)
	if strings.Contains(text, "missing") || !strings.Contains(text, a.Config) || !strings.Contains(text, "state:               connected") ||
		!strings.Contains(text, "log lines:") {
		t.Fatalf("status --config %s: want the config's paths present, connected, log counters; got\n%s", a.Config, text)
	}

	if a.LogContains("host isolation unavailable") {
		t.Logf("isolation start-up line not checked: host isolation unavailable here (needs root, eBPF, cgroup v2)")
	} else if !a.LogContains("isolation: not isolated") || a.LogContains("isolation off") || a.LogContains("pins removed") {
		t.Errorf("agent log at start: want a calm \"isolation: not isolated\", no alarm\n%s", a.Tail(20))
	}
}

// At the largest max_line_bytes (2 MiB) a plain 2 MiB line still arrives
// whole, and one that JSON escaping would blow up (control characters, six
// bytes each) is cut to fit a frame and flagged: neither sticks in the ring.
func TestLongestLogLinesFitAFrame(t *testing.T) {
	s := newSite(t, harness.RelayOptions{})
	a, w := s.agentWith("agent-1", func(o *harness.AgentOptions) {
		o.Extra = map[string]any{"logs": []map[string]any{{"paths": o.LogGlobs, "max_line_bytes": 2 << 20}}}
	})
	if err := a.WaitConnected(s.ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	plain := "plain " + strings.Repeat("p", 2<<20-len("plain "))
	ctl := "ctl " + strings.Repeat("\x01", 2<<20-len("ctl "))
	if err := os.WriteFile(w.Path, []byte(plain+"\n"+ctl+"\nafter\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	evs := waitLogEvents(t, s, 3)
	if len(evs) != 3 || evs[0].Message != plain || evs[0].Flags != nil || evs[2].Message != "after" {
		t.Fatalf("got %d events, want the 2 MiB line whole, the control line, \"after\"", len(evs))
	}
	if c := evs[1]; !strings.HasPrefix(c.Message, "ctl \x01") || len(c.Message) >= len(ctl) || !slices.Equal(c.Flags, []string{"truncated"}) {
		t.Fatalf("control line: got %d bytes flagged %q, want a truncated prefix", len(c.Message), c.Flags)
	}
	t.Logf("control line of %d bytes kept %d", len(ctl), len(evs[1].Message))
}
