package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/e2e/harness"
	"github.com/gatehouse/gatehouse/internal/netns"
)

// System tests of the agent's transport when the network changes under a
// live session, in the DMZ topology (see topology_test.go).

// firstLineWith returns the first line of the log at path holding every one
// of subs, and "" when none does.
func firstLineWith(path string, subs ...string) string {
	b, _ := os.ReadFile(path)
next:
	for _, l := range strings.Split(string(b), "\n") {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		return l
	}
	return ""
}

// proxyOnlySite is a DMZ site where only the proxy passes (agents to it,
// it to the cloud), with one agent connected through it, lines written.
func proxyOnlySite(t *testing.T) (*dmzSite, *harness.Agent, *harness.LogWriter) {
	t.Helper()
	d := newDMZSite(t, dmzOptions{policy: netns.ProxyOnly, cloudProxy: true})
	a, w := d.agent("agent-1", d.net.Proxy.URL())
	writeLines(t, w, 2, 50)
	d.waitAgent(a, "agent connected through the proxy", func(s harness.AgentStatus) bool {
		return s.State == "connected" && s.Transport == "tcp+proxy"
	})
	return d, a, w
}

// The agent's proxy dies under a live session (only the proxy may pass, so
// QUIC cannot either): the refused proxy connection is known at once, so
// the status names the proxy and the refusal while the first attempt's
// QUIC leg still waits for its handshake to time out, not after it; and
// the log says so before the attempt's end. Nothing is lost once the proxy
// is back.
func TestDMZProxyDeathReportedAtOnce(t *testing.T) {
	d, a, w := proxyOnlySite(t)
	proxy := d.net.Proxy.Addr()
	stopped := time.Now()
	d.net.Proxy.Stop()
	st := d.waitAgent(a, "status to name the proxy and its refusal", func(s harness.AgentStatus) bool {
		return s.State != "connected" && strings.Contains(s.LastError, "proxy "+proxy+" unreachable") &&
			strings.Contains(s.LastError, "connection refused")
	})
	t.Logf("proxy killed: status says %q %s later", st.LastError, time.Since(stopped).Round(10*time.Millisecond))

	// Order, not time: the first log line naming the refused proxy must be
	// the report made while the attempt still runs, not the attempt's end
	// ("relay connection failed"), which comes only after QUIC gave up.
	err := harness.WaitFor(d.ctx, 90*time.Second, "the first attempt after the proxy's death to end", func() (bool, error) {
		return firstLineWith(a.LogPath, "relay connection failed", "proxy "+proxy+" unreachable") != "", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	first := firstLineWith(a.LogPath, "proxy "+proxy+" unreachable")
	if !strings.Contains(first, "still trying the other transport") {
		t.Errorf("the refused proxy was first reported at the end of the attempt, not when it was refused:\n%s", first)
	}
	if l := firstLineWith(a.LogPath, "relay connection failed"); !strings.Contains(l, "connected through proxy "+proxy) {
		t.Errorf("the session's end does not say it went through the proxy:\n%s", l)
	}
	writeLines(t, w, 3, 100)
	if err := d.net.Proxy.Start(); err != nil {
		t.Fatal(err)
	}
	d.waitExactlyOnce(3*time.Minute, []*harness.Agent{a}, w)
}

// UDP starts being dropped under a live QUIC session while lines flow: the
// agent sees its writes go unanswered, races a TCP leg and moves to it
// without its session failing (before this, it waited out QUIC's 3 s idle
// timeout and reconnected, about 4 s). The switch time is measured and
// logged, not asserted; every line arrives exactly once.
func TestDMZUDPCutMidStreamMovesToTCP(t *testing.T) {
	d := newDMZSite(t, dmzOptions{policy: netns.Open})
	a, w := d.agent("agent-1", "")
	writeLines(t, w, 3, 50)
	d.waitAgent(a, "agent connected over quic", func(s harness.AgentStatus) bool {
		return s.State == "connected" && s.Transport == "quic"
	})
	stop := make(chan struct{})
	writing := writeFor(w, 20, 50*time.Millisecond, stop)
	time.Sleep(500 * time.Millisecond) // lines in flight when the cut comes
	d.net.SetPolicy(netns.AgentUDPDropped)
	cut := time.Now()
	t.Logf("UDP cut at %s", cut.UTC().Format("15:04:05.000"))
	d.waitAgent(a, "agent moved to tcp", func(s harness.AgentStatus) bool {
		return s.State == "connected" && s.Transport == "tcp"
	})
	t.Logf("UDP cut mid-stream: agent on tcp %s later (status.json polled every 100 ms)", time.Since(cut).Round(10*time.Millisecond))
	t.Logf("agent: %s", firstLineWith(a.LogPath, "quic path stalled"))
	if l := firstLineWith(a.LogPath, "moved from quic to tcp without reconnecting"); l != "" {
		t.Logf("agent: %s", l)
	} else {
		t.Errorf("agent log does not say it moved over to tcp")
	}
	if l := firstLineWith(a.LogPath, "relay connection failed"); l != "" {
		t.Errorf("the session failed instead of moving over (QUIC timed out):\n%s", l)
	}
	time.Sleep(time.Second) // lines written on tcp too
	close(stop)
	if err := <-writing; err != nil {
		t.Fatal(err)
	}
	if n, err := d.net.Dropped("agent-udp"); err != nil || n == 0 {
		t.Errorf("agent UDP dropped by the firewall: got %d (%v), want > 0", n, err)
	}
	d.waitExactlyOnce(3*time.Minute, []*harness.Agent{a}, w)
}
