package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/e2e/harness"
)

// A single relay's data directory written by 0ada000 (agent registry and
// cached control state in the spool, no Raft) upgrades in place: today's
// relay becomes a cluster of one, moves its agents into the replicated
// state, delivers what its spool held while the agent is still stopped,
// and admits the agent again without a new registration; every line
// reaches the cloud exactly once.
func TestSingleRelayUpgradesInPlace(t *testing.T) {
	bin := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	dir := t.TempDir()
	fixture, err := filepath.Abs("testdata/upgrade/single-relay-0ada000.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("tar", "-C", dir, "-xzf", fixture).CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", fixture, err, b)
	}
	var meta upgradeSite
	b, err := os.ReadFile(filepath.Join(dir, "site.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	old := readLines(t, filepath.Join(dir, "agent-1", "logs", "app.log"))
	if len(old) != meta.Delivered+meta.Spooled {
		t.Fatalf("fixture: %d lines in the log, want %d", len(old), meta.Delivered+meta.Spooled)
	}
	s := &testSite{t: t, ctx: ctx, bin: bin, dir: dir, site: &meta.Site}
	t.Cleanup(s.stopAll)
	if s.cloud, err = harness.StartCloud(ctx, bin, filepath.Join(dir, "cloud")); s.cloud != nil && s.cloud.Proc != nil {
		s.procs = append(s.procs, s.cloud.Proc)
	}
	if err != nil {
		t.Fatal(err)
	}
	if s.relay, err = harness.StartRelay(ctx, bin, filepath.Join(dir, "relay-1"), s.cloud, "", harness.RelayOptions{}); s.relay != nil && s.relay.Proc != nil {
		s.procs = append(s.procs, s.relay.Proc)
	}
	if err != nil {
		t.Fatal(err)
	}
	if s.fp, err = s.relay.Fingerprint(); err != nil || s.fp != meta.Fingerprint {
		t.Fatalf("relay fingerprint after the upgrade: got %q (%v), want %s", s.fp, err, meta.Fingerprint)
	}

	// The agent is stopped: the lines only the relay's spool holds can
	// reach the cloud only from there.
	err = harness.WaitFor(ctx, 2*time.Minute, "the spooled lines delivered by the upgraded relay", func() (bool, error) {
		got, err := s.cloud.Messages(ctx, meta.Site.TenantID)
		if err != nil {
			return false, err
		}
		if n := harness.Delivered(old, got); n < len(old) {
			return false, fmt.Errorf("%d of %d lines", n, len(old))
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !s.relay.Proc.LogContains("moved the spool's agent registry into the site state") {
		t.Fatalf("relay log does not say it moved the old registry:\n%s", s.relay.Proc.Tail(30))
	}
	cs, err := s.relay.ClusterStatus(ctx)
	if err != nil || len(cs.Members) != 1 || cs.LeaderID != s.relay.NodeID() {
		t.Fatalf("cluster status: got %+v (%v), want a cluster of one", cs, err)
	}

	// The agent comes back with no registration key: only the moved
	// registry admits it.
	w, err := harness.NewLogWriter(filepath.Join(dir, "agent-1", "logs-after", "app.log"), "agent-1-after")
	if err != nil {
		t.Fatal(err)
	}
	a, err := harness.StartAgent(ctx, bin, filepath.Join(dir, "agent-1"), harness.AgentOptions{
		Relays: []string{s.relay.Addr}, Fingerprint: s.fp,
		LogGlobs: []string{filepath.Join(dir, "agent-1", "logs-after", "*.log")},
	})
	if a != nil && a.Proc != nil {
		s.procs = append(s.procs, a.Proc)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(100); err != nil {
		t.Fatal(err)
	}
	s.waitLinesExactlyOnce(3*time.Minute, []*harness.Agent{a}, append(old, w.Lines()...))
	st, err := a.Status()
	if err != nil || st.AgentID != meta.AgentID {
		t.Fatalf("agent id after the upgrade: got %q (%v), want %s", st.AgentID, err, meta.AgentID)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
