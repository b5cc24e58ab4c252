package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/e2e/harness"
)

// upgradeFixtureEnv names the tarball TestMakeUpgradeFixture writes. The
// fixture is made by the release being upgraded from, not by the code under
// test, so it is a tool run by hand at a release (see
// e2e/testdata/upgrade/README.md), not part of `make test`.
const upgradeFixtureEnv = "GATEHOUSE_MAKE_UPGRADE_FIXTURE"

// upgradeSite is what the fixture's tests need to know about it.
type upgradeSite struct {
	Site        harness.Site `json:"site"`
	Fingerprint string       `json:"fingerprint"`
	AgentID     string       `json:"agent_id"`
	// Delivered lines reached the cloud; Spooled ones were acknowledged by
	// the relay and are held only in its spool (and the agent's ring).
	Delivered int    `json:"delivered"`
	Spooled   int    `json:"spooled"`
	Release   string `json:"release"`
}

// TestMakeUpgradeFixture runs a cloud, a single relay and an agent with this
// tree's binaries, leaves lines in the relay's spool with the cloud away,
// stops everything and archives the three data directories.
func TestMakeUpgradeFixture(t *testing.T) {
	out := os.Getenv(upgradeFixtureEnv)
	if out == "" {
		t.Skipf("a tool, not a test: set %s=path.tar.gz to write an upgrade fixture with this tree's binaries", upgradeFixtureEnv)
	}
	s := newSite(t, harness.RelayOptions{})
	a, w := s.agent("agent-1")
	if err := w.Write(300); err != nil {
		t.Fatal(err)
	}
	s.waitExactlyOnce(3*time.Minute, []*harness.Agent{a}, w)
	if err := s.cloud.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(200); err != nil {
		t.Fatal(err)
	}
	err := harness.WaitFor(s.ctx, 2*time.Minute, "the last lines spooled by the relay only", func() (bool, error) {
		st, err := a.Status()
		if err != nil {
			return false, err
		}
		if st.Pending != 0 || st.SpooledUndelivered == 0 {
			return false, fmt.Errorf("pending %d, spooled undelivered %d", st.Pending, st.SpooledUndelivered)
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := a.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*harness.Proc{a.Proc, s.relay.Proc} {
		if err := p.Stop(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	rev, _ := exec.Command("git", "describe", "--always", "--dirty").Output()
	meta := upgradeSite{Site: *s.site, Fingerprint: s.fp, AgentID: st.AgentID, Delivered: 300, Spooled: 200, Release: strings.TrimSpace(string(rev))}
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "site.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Logs and configs are rewritten by the test; the data directories are the fixture.
	tar := exec.Command("tar", "-C", s.dir, "--sparse", "-czf", out,
		"site.json", "cloud/data", "relay-1/data", "agent-1/data", "agent-1/logs")
	if b, err := tar.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, b)
	}
	t.Logf("wrote %s (agent %s, release %s)", out, st.AgentID, rev)
}
