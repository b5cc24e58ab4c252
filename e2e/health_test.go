package e2e

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/e2e/harness"
)

// A normal stop is not an error: every binary, stopped with SIGTERM while
// the relay long-polls the cloud and an agent streams to the relay, logs no
// ERROR line and exits 0.
func TestCleanShutdownLogsNoError(t *testing.T) {
	s := newSite(t, harness.RelayOptions{})
	a, w := s.agent("agent-1")
	if err := a.WaitConnected(s.ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(20); err != nil {
		t.Fatal(err)
	}
	s.waitExactlyOnce(2*time.Minute, nil, w)
	// The cloud first, while the relay holds a long poll open, then the
	// relay while the agent is connected, then the agent.
	for _, p := range []*harness.Proc{s.cloud.Proc, s.relay.Proc, a.Proc} {
		if err := p.Stop(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		if err := p.ExitErr(); err != nil {
			t.Errorf("%s: exit after SIGTERM: %v\n%s", p.Name, err, p.Tail(20))
		}
		if p.LogContains("level=ERROR") {
			t.Errorf("%s logged an ERROR on a normal stop:\n%s", p.Name, p.Tail(20))
		}
	}
}
