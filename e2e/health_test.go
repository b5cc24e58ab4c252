package e2e

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/cloud/adminapi"
	"github.com/gatehouse/gatehouse/e2e/harness"
	"github.com/gatehouse/gatehouse/internal/netns"
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

// The firewall between the relay and the cloud starts dropping packets
// (no reset, no ICMP), while the relay holds an HTTP/2 connection to the
// cloud and its agent keeps sending. The relay must say so, naming the
// cloud's address and the likely cause, /v1/status and the gauge must stop
// calling the cloud reachable, and /readyz must answer 503 naming the
// cloud, while the agent stays connected and its data is spooled. When the
// path opens again everything arrives exactly once and the relay is ready.
func TestDMZSilentlyDroppedCloudPath(t *testing.T) {
	d := newDMZSite(t, dmzOptions{})
	droppedCloudPath(t, d, d.net.Relay(), "connect to cloud "+d.cloud.Listen+": no answer in 5s (dropped by a firewall?)")
}

// The same behind the site's proxy: the proxy's packets to the cloud are
// dropped, so the proxy takes the relay's CONNECT and never answers it.
func TestDMZSilentlyDroppedCloudPathBehindProxy(t *testing.T) {
	d := newDMZSite(t, dmzOptions{policy: netns.DMZEgressViaProxy, cloudProxy: true})
	droppedCloudPath(t, d, d.net.ProxyHost, "connect to cloud "+d.cloud.Listen+" through proxy "+d.net.Proxy.Addr()+
		": no answer to CONNECT in 5s (the proxy cannot reach the cloud: dropped by a firewall?)")
}

// droppedCloudPath drops everything between from and the cloud while an
// agent streams, and checks that the relay reports it with want (in
// /v1/status last_error), stops calling the cloud reachable and fails
// /readyz, then that everything arrives once the path is open again.
func droppedCloudPath(t *testing.T, d *dmzSite, from *netns.Host, want string) {
	a, w := d.agent("agent-1", "")
	writeLines(t, w, 2, 50)
	st := d.waitRelay("relay uploading", func(s harness.RelayStatus) bool {
		return s.Uplink.UploadedBatches > 0 && s.Uplink.CloudReachable
	})
	if st.Uplink.LastContact == "" {
		t.Errorf("relay status while uploading: no last_contact (%+v)", st.Uplink)
	}
	if code, body, err := d.relay.Readyz(d.ctx); err != nil || code != http.StatusOK {
		t.Fatalf("readyz with the cloud reachable: got %d %q (%v), want 200", code, body, err)
	}

	// Drop everything between from and the cloud, both ways, ahead of the
	// rule that lets established connections through.
	policy := d.net.Policy()
	fromIP, cloudIP := from.IP.String(), d.net.Cloud.IP.String()
	proxy := d.net.Proxy.AddrPort()
	open, err := policy.Ruleset(&proxy)
	if err != nil {
		t.Fatal(err)
	}
	cut := strings.Replace(open, "ct state established,related accept", fmt.Sprintf(
		"ip saddr %s ip daddr %s counter drop comment \"cloud-path\"\n\t\t"+
			"ip saddr %s ip daddr %s counter drop comment \"cloud-path\"\n\t\t"+
			"ct state established,related accept", fromIP, cloudIP, cloudIP, fromIP), 1)
	if err := d.net.Nft(cut); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s <-> cloud dropped", from.Name)
	writeLines(t, w, 3, 50)

	// First the open HTTP/2 connection fails its keep-alive ping; the
	// retries then dial anew and get no answer.
	st = d.waitRelay("relay to report the silent drop", func(s harness.RelayStatus) bool {
		return !s.Uplink.CloudReachable && strings.Contains(s.Uplink.LastError, want) && s.Spool.Batches > 0
	})
	if !d.relay.LogContains("no answer to keep-alive ping in 5s (dropped by a firewall?)") {
		t.Errorf("relay log does not say its open connection to the cloud was lost")
	}
	t.Logf("relay status while dropped: reachable=%v last_error=%q spooled=%d", st.Uplink.CloudReachable, st.Uplink.LastError, st.Spool.Batches)
	if n, err := d.relay.Metric(d.ctx, "gatehouse_relay_cloud_reachable"); err != nil || n != 0 {
		t.Errorf("gatehouse_relay_cloud_reachable while dropped: got %v (%v), want 0", n, err)
	}
	code, body, err := d.relay.Readyz(d.ctx)
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "cloud") {
		t.Errorf("readyz while dropped: got %d %q (%v), want 503 naming the cloud", code, body, err)
	}
	t.Logf("readyz while dropped: %d %s", code, body)
	if as, err := a.Status(); err != nil || as.State != "connected" {
		t.Errorf("agent while the cloud path is dropped: got %+v (%v), want still connected to the relay", as, err)
	}
	if n, err := d.net.Dropped("cloud-path"); err != nil || n == 0 {
		t.Errorf("packets dropped between relay and cloud: got %d (%v), want > 0", n, err)
	}

	d.net.SetPolicy(policy)
	t.Logf("%s <-> cloud open again", from.Name)
	d.waitExactlyOnce(3*time.Minute, []*harness.Agent{a}, w)
	d.waitRelay("relay reachable again", func(s harness.RelayStatus) bool { return s.Uplink.CloudReachable })
	if err := harness.WaitFor(d.ctx, time.Minute, "readyz 200 again", func() (bool, error) {
		code, body, err := d.relay.Readyz(d.ctx)
		return err == nil && code == http.StatusOK, fmt.Errorf("readyz %d %q (%v)", code, body, err)
	}); err != nil {
		t.Error(err)
	}
}

// The cloud's agent list shows when each agent was last seen and its last
// event's time, in the admin API and in `gatehousectl agent list`; both
// move on with new data and stay absent ("-") for an agent that sent none.
func TestAgentListShowsLastSeenAndLastEvent(t *testing.T) {
	s := newSite(t, harness.RelayOptions{})
	a, w := s.agent("agent-1")
	if err := a.WaitConnected(s.ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(10); err != nil {
		t.Fatal(err)
	}
	s.waitExactlyOnce(2*time.Minute, []*harness.Agent{a}, w)
	as, err := a.Status()
	if err != nil {
		t.Fatal(err)
	}
	list := func() adminapi.Agent {
		t.Helper()
		agents, err := s.cloud.Admin.ListAgents(s.ctx, s.site.TenantID)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range agents {
			if g.ID == as.AgentID {
				return g
			}
		}
		t.Fatalf("agent %s not in the cloud's list %+v", as.AgentID, agents)
		return adminapi.Agent{}
	}
	first := list()
	if first.LastSeenAt.IsZero() || first.LastEventAt.IsZero() {
		t.Fatalf("after delivery: last_seen_at %v, last_event_at %v; want both set", first.LastSeenAt, first.LastEventAt)
	}
	if first.LastSeenAt.Before(first.RegisteredAt) {
		t.Errorf("last_seen_at %v before registered_at %v", first.LastSeenAt, first.RegisteredAt)
	}

	// More data later: both times move on.
	if err := harness.WaitFor(s.ctx, time.Minute, "a new millisecond", func() (bool, error) {
		return time.Since(first.LastSeenAt) > 10*time.Millisecond && time.Since(first.LastEventAt) > 10*time.Millisecond, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(10); err != nil {
		t.Fatal(err)
	}
	s.waitExactlyOnce(2*time.Minute, []*harness.Agent{a}, w)
	second := list()
	if !second.LastSeenAt.After(first.LastSeenAt) || !second.LastEventAt.After(first.LastEventAt) {
		t.Errorf("after more data: last_seen_at %v -> %v, last_event_at %v -> %v; want both later",
			first.LastSeenAt, second.LastSeenAt, first.LastEventAt, second.LastEventAt)
	}

	out, err := exec.CommandContext(s.ctx, filepath.Join(s.bin, "gatehousectl"), "--server", "http://"+s.cloud.AdminAddr,
		"--token-file", filepath.Join(s.cloud.DataDir, "admin.token"), "agent", "list", "--tenant", s.site.TenantID).CombinedOutput()
	if err != nil {
		t.Fatalf("gatehousectl agent list: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 || !strings.Contains(lines[0], "LAST_SEEN") || !strings.Contains(lines[0], "LAST_EVENT") {
		t.Fatalf("gatehousectl agent list: want LAST_SEEN and LAST_EVENT columns:\n%s", out)
	}
	for _, want := range []string{second.LastSeenAt.UTC().Format(time.RFC3339), second.LastEventAt.UTC().Format(time.RFC3339)} {
		if !strings.Contains(string(out), want) {
			t.Errorf("gatehousectl agent list does not show %s:\n%s", want, out)
		}
	}
	t.Logf("gatehousectl agent list:\n%s", out)
}
