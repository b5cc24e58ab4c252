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

// The agent's proxy dies under a live session (only the proxy may pass, so
// QUIC cannot either): the refused proxy connection is known at once, so
// the status names the proxy and the refusal while the first attempt's
// QUIC leg still waits for its handshake to time out, not after it; and
// the log says so before the attempt's end. Nothing is lost once the proxy
// is back.
func TestDMZProxyDeathReportedAtOnce(t *testing.T) {
	d := newDMZSite(t, dmzOptions{policy: netns.ProxyOnly, cloudProxy: true})
	a, w := d.agent("agent-1", d.net.Proxy.URL())
	writeLines(t, w, 2, 50)
	d.waitAgent(a, "agent connected through the proxy", func(s harness.AgentStatus) bool {
		return s.State == "connected" && s.Transport == "tcp+proxy"
	})
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
