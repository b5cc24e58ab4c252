package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/e2e/harness"
	"github.com/gatehouse/gatehouse/internal/netns"
)

// System tests through the DMZ topology (internal/netns): agents in
// 198.51.100.0/24, the relay and a real tinyproxy in the DMZ 192.0.2.0/24,
// the cloud in 203.0.113.0/24, an nftables router between them. They need
// root and skip without it.

// dmzSite is a testSite whose cloud, relay and agents run in the topology.
type dmzSite struct {
	*testSite
	net *netns.Site
}

type dmzOptions struct {
	policy     netns.Policy
	cloudProxy bool // the relay reaches the cloud through the site's proxy
	// cloudProxyEnv: through the site's proxy named by HTTPS_PROXY in the
	// relay's environment instead of cloud.proxy.
	cloudProxyEnv bool
}

func place(h *netns.Host) harness.Place {
	return harness.Place{Netns: h.Netns, IP: h.IP.String(), Dial: h.DialContext}
}

func newDMZSite(t *testing.T, o dmzOptions) *dmzSite {
	t.Helper()
	bin := binaries(t)
	n := netns.NewSite(t, netns.SiteOptions{}) // skips without root; torn down last
	if o.policy.Name == "" {
		o.policy = netns.Open
	}
	n.SetPolicy(o.policy)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	s := &testSite{t: t, ctx: ctx, bin: bin, dir: t.TempDir()}
	d := &dmzSite{testSite: s, net: n}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("firewall %s:\n%s\n--- tinyproxy log:\n%s", n.Policy().Name, n.NftList(), tail(n.Proxy.LogPath))
		}
		s.stopAll()
	})

	var err error
	s.cloud, err = harness.StartCloudAt(ctx, bin, filepath.Join(s.dir, "cloud"), place(n.Cloud))
	if s.cloud != nil && s.cloud.Proc != nil {
		s.procs = append(s.procs, s.cloud.Proc)
	}
	if err != nil {
		t.Fatalf("start cloud: %v", err)
	}
	if s.site, err = s.cloud.Bootstrap(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	tok, err := s.cloud.EnrollmentToken(ctx, s.site)
	if err != nil {
		t.Fatal(err)
	}
	ropt := harness.RelayOptions{Place: place(n.Relay())}
	if o.cloudProxy {
		ropt.CloudProxy = n.Proxy.URL()
	}
	if o.cloudProxyEnv {
		ropt.Env = []string{"HTTPS_PROXY=" + n.Proxy.URL(), "NO_PROXY="}
	}
	s.relay, err = harness.StartRelay(ctx, bin, filepath.Join(s.dir, "relay-1"), s.cloud, tok, ropt)
	if s.relay != nil && s.relay.Proc != nil {
		s.procs = append(s.procs, s.relay.Proc)
	}
	if err != nil {
		t.Fatalf("start relay: %v", err)
	}
	if s.fp, err = s.relay.Fingerprint(); err != nil {
		t.Fatal(err)
	}
	return d
}

// agent starts an agent on the agent host; proxy is its proxy setting.
func (d *dmzSite) agent(name, proxy string) (*harness.Agent, *harness.LogWriter) {
	d.t.Helper()
	return d.agentWith(name, func(o *harness.AgentOptions) {
		o.Place = place(d.net.Agent())
		o.Proxy = proxy
	})
}

// waitAgent waits until the agent's status satisfies cond, failing with
// its last status and log.
func (d *dmzSite) waitAgent(a *harness.Agent, what string, cond func(harness.AgentStatus) bool) harness.AgentStatus {
	d.t.Helper()
	var st harness.AgentStatus
	err := harness.WaitFor(d.ctx, 90*time.Second, what, func() (bool, error) {
		if !a.Running() {
			return false, fmt.Errorf("%s exited: %v", a.Name, a.ExitErr())
		}
		var err error
		st, err = a.Status()
		return err == nil && cond(st), err
	})
	if err != nil {
		d.t.Fatalf("%v\nlast status: %+v", err, st)
	}
	return st
}

// waitRelay waits until the relay's status satisfies cond.
func (d *dmzSite) waitRelay(what string, cond func(harness.RelayStatus) bool) harness.RelayStatus {
	d.t.Helper()
	var st harness.RelayStatus
	err := harness.WaitFor(d.ctx, 90*time.Second, what, func() (bool, error) {
		var err error
		st, err = d.relay.Status(d.ctx)
		return err == nil && cond(st), err
	})
	if err != nil {
		d.t.Fatalf("%v\nlast status: %+v", err, st)
	}
	return st
}

func (d *dmzSite) cloudCount() int {
	d.t.Helper()
	got, err := d.cloud.Messages(d.ctx, d.site.TenantID)
	if err != nil {
		d.t.Fatal(err)
	}
	n := 0
	for _, c := range got {
		n += c
	}
	return n
}

func writeLines(t *testing.T, w *harness.LogWriter, rounds, n int) {
	t.Helper()
	for range rounds {
		if err := w.Write(n); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Everything open: the agent chooses QUIC.
func TestDMZOpenChoosesQUIC(t *testing.T) {
	d := newDMZSite(t, dmzOptions{policy: netns.Open})
	a, w := d.agent("agent-1", "")
	writeLines(t, w, 5, 100)
	st := d.waitAgent(a, "agent connected", func(s harness.AgentStatus) bool { return s.State == "connected" })
	if st.Transport != "quic" {
		t.Errorf("transport: got %q, want quic", st.Transport)
	}
	d.waitExactlyOnce(3*time.Minute, []*harness.Agent{a}, w)
}

// Agents' UDP to the DMZ dropped silently: the agent connects over TLS/TCP
// on its own, and every line arrives once.
func TestDMZUDPDroppedChoosesTCP(t *testing.T) {
	d := newDMZSite(t, dmzOptions{policy: netns.AgentUDPDropped})
	a, w := d.agent("agent-1", "")
	writeLines(t, w, 5, 100)
	st := d.waitAgent(a, "agent connected", func(s harness.AgentStatus) bool { return s.State == "connected" })
	if st.Transport != "tcp" {
		t.Errorf("transport: got %q, want tcp", st.Transport)
	}
	if n, err := d.net.Dropped("agent-udp"); err != nil || n == 0 {
		t.Errorf("agent UDP dropped by the firewall: got %d (%v), want > 0 (QUIC was tried)", n, err)
	}
	d.waitExactlyOnce(3*time.Minute, []*harness.Agent{a}, w)
}

// Only the proxy may pass: the agent reaches the relay through the proxy,
// and the relay reaches the cloud through the same proxy, both with
// credentials.
func TestDMZOnlyProxyAllowed(t *testing.T) {
	d := newDMZSite(t, dmzOptions{policy: netns.ProxyOnly, cloudProxy: true})
	a, w := d.agent("agent-1", d.net.Proxy.URL())
	writeLines(t, w, 5, 100)
	st := d.waitAgent(a, "agent connected", func(s harness.AgentStatus) bool { return s.State == "connected" })
	if st.Transport != "tcp+proxy" {
		t.Errorf("transport: got %q, want tcp+proxy", st.Transport)
	}
	if strings.Contains(st.Proxy, netns.ProxyPass) {
		t.Errorf("status.json proxy %q shows the password", st.Proxy)
	}
	d.waitExactlyOnce(3*time.Minute, []*harness.Agent{a}, w)
	for _, target := range []string{d.relay.Addr, d.cloud.Listen} {
		if !d.net.Proxy.LogContains("CONNECT " + target) {
			t.Errorf("tinyproxy log has no CONNECT %s", target)
		}
	}
	for _, p := range []*harness.Proc{a.Proc, d.relay.Proc} {
		if p.LogContains(netns.ProxyPass) {
			t.Errorf("%s log shows the proxy password", p.Name)
		}
	}
}

// A wrong proxy password at the agent: a clear message in its status and
// log, nothing lost (the ring keeps the lines), and every line arrives
// once after the config is fixed and the agent restarted.
func TestDMZAgentWrongProxyPassword(t *testing.T) {
	d := newDMZSite(t, dmzOptions{policy: netns.ProxyOnly, cloudProxy: true})
	a, w := d.agent("agent-1", d.net.Proxy.URLWith(netns.ProxyUser, "wrong-password"))
	writeLines(t, w, 5, 100)
	d.waitAgent(a, "agent to report the proxy's refusal", func(s harness.AgentStatus) bool {
		return strings.Contains(s.LastError, "proxy authentication failed") && s.Ring.Batches > 0
	})
	if !a.LogContains("proxy authentication failed") {
		t.Errorf("agent log does not say the proxy authentication failed")
	}
	if a.LogContains("wrong-password") {
		t.Errorf("agent log shows the proxy password")
	}
	if n := d.cloudCount(); n != 0 {
		t.Errorf("cloud holds %d lines, want 0 before the agent can connect", n)
	}
	if err := a.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := a.SetProxy(d.net.Proxy.URL()); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	st := d.waitAgent(a, "agent connected through the proxy", func(s harness.AgentStatus) bool { return s.State == "connected" })
	if st.Transport != "tcp+proxy" {
		t.Errorf("transport: got %q, want tcp+proxy", st.Transport)
	}
	d.waitExactlyOnce(3*time.Minute, []*harness.Agent{a}, w)
}

// A wrong cloud.proxy password at the relay: a clear message in its log,
// /v1/status and a metric; the spool keeps the batches; every line arrives
// once after the config is fixed and the relay restarted.
func TestDMZRelayWrongCloudProxyPassword(t *testing.T) {
	d := newDMZSite(t, dmzOptions{policy: netns.DMZEgressViaProxy, cloudProxy: true})
	a, w := d.agent("agent-1", "")
	writeLines(t, w, 2, 50)
	d.waitRelay("relay enrolled and uploading through the proxy", func(s harness.RelayStatus) bool {
		return s.RelayID != "" && s.Uplink.UploadedBatches > 0
	})
	if err := d.relay.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := d.relay.SetCloudProxy(d.net.Proxy.URLWith(netns.ProxyUser, "wrong-password")); err != nil {
		t.Fatal(err)
	}
	if err := d.relay.Restart(d.ctx); err != nil {
		t.Fatal(err)
	}
	writeLines(t, w, 3, 100)
	d.waitRelay("relay to report the proxy's refusal", func(s harness.RelayStatus) bool {
		return strings.Contains(s.Uplink.LastError, "cloud proxy authentication failed") && s.Spool.Batches > 0 && !s.Uplink.CloudReachable
	})
	if n, err := d.relay.Metric(d.ctx, "gatehouse_relay_cloud_proxy_errors_total", `reason="auth"`); err != nil || n == 0 {
		t.Errorf("gatehouse_relay_cloud_proxy_errors_total{reason=auth}: got %v (%v), want > 0", n, err)
	}
	if !d.relay.LogContains("cloud proxy authentication failed") {
		t.Errorf("relay log does not say the cloud proxy authentication failed")
	}
	if d.relay.LogContains("wrong-password") {
		t.Errorf("relay log shows the proxy password")
	}
	if err := d.relay.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := d.relay.SetCloudProxy(d.net.Proxy.URL()); err != nil {
		t.Fatal(err)
	}
	if err := d.relay.Restart(d.ctx); err != nil {
		t.Fatal(err)
	}
	d.waitExactlyOnce(3*time.Minute, []*harness.Agent{a}, w)
}

// With cloud.proxy empty, the relay follows HTTPS_PROXY.
func TestDMZRelayCloudProxyFromEnvironment(t *testing.T) {
	d := newDMZSite(t, dmzOptions{policy: netns.DMZEgressViaProxy, cloudProxyEnv: true})
	a, w := d.agent("agent-1", "")
	writeLines(t, w, 3, 100)
	d.waitExactlyOnce(3*time.Minute, []*harness.Agent{a}, w)
	if !d.net.Proxy.LogContains("CONNECT " + d.cloud.Listen) {
		t.Errorf("tinyproxy log has no CONNECT %s", d.cloud.Listen)
	}
}

// The proxy down for a while: the agent keeps its lines in its ring, the
// relay says its cloud proxy is unreachable, and everything drains once the
// proxy is back.
func TestDMZProxyDownAgentBuffers(t *testing.T) {
	d, a, w := proxyOnlySite(t)
	d.net.Proxy.Stop()
	writeLines(t, w, 5, 100)
	st := d.waitAgent(a, "agent to buffer and say the proxy is unreachable", func(s harness.AgentStatus) bool {
		return s.State != "connected" && s.Ring.Batches > 0 && strings.Contains(s.LastError, "unreachable")
	})
	t.Logf("proxy down: agent holds %d batches, last error %q", st.Ring.Batches, st.LastError)
	rs := d.waitRelay("relay to say the cloud proxy is unreachable", func(s harness.RelayStatus) bool {
		return strings.Contains(s.Uplink.LastError, "cloud proxy") && strings.Contains(s.Uplink.LastError, "unreachable") && !s.Uplink.CloudReachable
	})
	t.Logf("proxy down: relay says %q", rs.Uplink.LastError)
	if err := d.net.Proxy.Start(); err != nil {
		t.Fatal(err)
	}
	d.waitExactlyOnce(3*time.Minute, []*harness.Agent{a}, w)
}

func tail(path string) string {
	p := harness.NewProc("", "", nil, path)
	return p.Tail(30)
}
