package agent

import (
	"slices"
	"testing"

	"github.com/gatehouse/gatehouse/agent/internal/collect"
)

// Every collector the config enables is in the one list, log tailing and
// host stats among them, and the tier reaches those that follow it.
func TestCollectorsAreOneList(t *testing.T) {
	cfg := tierConfig(t, t.TempDir(), "workstation")
	cfg.Process.Enabled, cfg.Netflow.Enabled = true, true
	a := newTestAgent(t, cfg)
	defer a.Close()
	var names, following []string
	for _, c := range a.coll.list {
		names = append(names, c.Name())
		if _, ok := c.(collect.TierFollower); ok {
			following = append(following, c.Name())
		}
	}
	for _, want := range []string{"logtail", "process", "netflow"} {
		if !slices.Contains(names, want) {
			t.Errorf("collectors %v: %s missing", names, want)
		}
	}
	if a.coll.sampler != nil && !slices.Contains(names, "hoststats") {
		t.Errorf("collectors %v: hoststats missing though its sampler works here", names)
	}
	if slices.Contains(names, "auth") || slices.Contains(names, "filemod") {
		t.Errorf("collectors %v: a disabled collector is listed", names)
	}
	slices.Sort(following)
	if !slices.Equal(following, []string{"netflow", "process"}) {
		t.Errorf("collectors following the tier: got %v, want netflow and process", following)
	}
	if err := a.SetPolicyTier("server"); err != nil || a.PolicyTier() != "server" {
		t.Fatalf("set tier before the collectors run: %v, tier %q", err, a.PolicyTier())
	}
}
