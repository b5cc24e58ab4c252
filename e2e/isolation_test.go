package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/gatehouse/gatehouse/cloud/adminapi"
	"github.com/gatehouse/gatehouse/e2e/harness"
	"github.com/gatehouse/gatehouse/internal/netns"
)

// Host isolation end to end (root only): the real agent runs on the agent
// host of the DMZ topology AND in a child cgroup v2 made for the test; its
// eBPF programs attach to that cgroup (never the machine's root cgroup) and
// pin under a private bpffs. Every probe runs in the agent's namespace and
// cgroup. The IPv4 peers live in the DMZ (the zone agents may reach): one
// allowed by CIDR, one by a name the test's resolver answers, one not
// allowed; the resolver sits in the DMZ too. The topology routes IPv4
// only, so the IPv6 peers sit in a namespace of the test's own on a veth
// straight from the agent's namespace: one allowed by CIDR, one not.

const (
	isoProbeEnv  = "GATEHOUSE_E2E_ISOLATION_PROBE"
	isoProbePort = 7000
	isoAllowName = "allowed.isolation.example"
)

// isoLab is the cgroup and bpffs the agent's isolation is confined to.
type isoLab struct {
	cgroup string // cgroup v2 directory holding the agent and the probes
	bpffs  string // private bpffs mount
	pinDir string // the agent's isolation.pin_dir
	agent  *harness.Agent
}

// cgroup2Root finds the unified hierarchy in /proc/self/mountinfo.
func cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		pre, post, ok := strings.Cut(l, " - ")
		fields := strings.Fields(pre)
		if ok && len(fields) >= 5 && strings.HasPrefix(post, "cgroup2 ") {
			return fields[4], nil
		}
	}
	return "", errors.New("no cgroup2 mount")
}

func newIsoLab(t testing.TB) *isoLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, a child cgroup v2 and eBPF")
	}
	for _, b := range []string{"nsenter", "unshare", "mount"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("needs %s (util-linux): %v", b, err)
		}
	}
	root, err := cgroup2Root()
	if err != nil {
		t.Skipf("needs cgroup v2: %v", err)
	}
	r := make([]byte, 4)
	rand.Read(r)
	id := hex.EncodeToString(r)
	l := &isoLab{cgroup: filepath.Join(root, "gh-"+id), bpffs: filepath.Join(t.TempDir(), "bpf")}
	l.pinDir = filepath.Join(l.bpffs, "gh-"+id)
	if err := os.Mkdir(l.bpffs, 0o700); err != nil {
		t.Fatal(err)
	}
	// Mounted here, in the test's mount namespace: the pins outlive the
	// agent (kill -9) as they would on a host's /sys/fs/bpf.
	if err := unix.Mount("bpf", l.bpffs, "bpf", 0, "mode=0700"); err != nil {
		t.Skipf("needs bpffs: %v", err)
	}
	if err := os.Mkdir(l.cgroup, 0o755); err != nil {
		unix.Unmount(l.bpffs, unix.MNT_DETACH)
		t.Skipf("needs a child cgroup v2: %v", err)
	}
	t.Cleanup(func() { l.cleanup(t) })
	return l
}

// cleanup kills what is left in the cgroup (the agent: the test started
// everything in it), drops the pins with the bpffs and removes the cgroup.
func (l *isoLab) cleanup(t testing.TB) {
	if l.agent != nil {
		l.agent.Kill()
	}
	if b, err := os.ReadFile(filepath.Join(l.cgroup, "cgroup.procs")); err == nil {
		for _, f := range strings.Fields(string(b)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil && pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if err := unix.Unmount(l.bpffs, unix.MNT_DETACH); err != nil {
		t.Errorf("unmount %s: %v", l.bpffs, err)
	}
	for range 50 {
		if err := os.Remove(l.cgroup); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("cgroup %s left behind", l.cgroup)
}

// pins lists the pin directory ("" entries: none, or no directory).
func (l *isoLab) pins() []string {
	ents, _ := os.ReadDir(l.pinDir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// servePeer answers TCP (one byte, then close) and UDP (echo) on
// isoProbePort of addr in namespace ns; the kernel answers pings.
func servePeer(t *testing.T, ns string, addr netip.Addr) {
	t.Helper()
	hp := net.JoinHostPort(addr.String(), fmt.Sprint(isoProbePort))
	ln, err := netns.ListenIn(ns, "tcp", hp)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := netns.ListenPacketIn(ns, "udp", hp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("y"))
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
}

// serveDNS is the site's resolver on h:53 (UDP): isoAllowName -> target,
// anything else NXDOMAIN.
func serveDNS(t *testing.T, h *netns.Host, target netip.Addr) {
	t.Helper()
	pc, err := netns.ListenPacketIn(h.Netns, "udp", h.Addr(53))
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 && strings.EqualFold(q.Question[0].Name, isoAllowName+".") && q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: isoAllowName + ".", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   target.AsSlice(),
			})
		} else if len(q.Question) == 1 && !strings.EqualFold(q.Question[0].Name, isoAllowName+".") {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
}

// IPv6 peers: a namespace of the test's own on a veth from the agent's.
var (
	agent6   = netip.MustParseAddr("fd00:6e:1::1")
	denied6  = netip.MustParseAddr("fd00:6e:1::2")
	allowed6 = netip.MustParseAddr("fd00:6e:1::3")
)

// addIPv6Peers makes the IPv6 peers' namespace, joined to agentNS by a
// veth, and serves both peer addresses; deleting the namespace removes
// the veth.
func addIPv6Peers(t *testing.T, agentNS string) {
	t.Helper()
	r := make([]byte, 3)
	rand.Read(r)
	id := hex.EncodeToString(r)
	ns, va, vb := "gh6-"+id, "gh6a"+id, "gh6b"+id
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	sh("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	sh("ip", "link", "add", va, "netns", agentNS, "type", "veth", "peer", "name", vb, "netns", ns)
	for _, c := range [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", agentNS, "addr", "add", agent6.String() + "/64", "dev", va, "nodad"},
		{"-n", ns, "addr", "add", denied6.String() + "/64", "dev", vb, "nodad"},
		{"-n", ns, "addr", "add", allowed6.String() + "/64", "dev", vb, "nodad"},
		{"-n", agentNS, "link", "set", va, "up"},
		{"-n", ns, "link", "set", vb, "up"},
	} {
		sh(append([]string{"ip"}, c...)...)
	}
	servePeer(t, ns, denied6)
	servePeer(t, ns, allowed6)
}

// probeResult is what one probe spec gave: nil (it worked) or why not.
type probeResult map[string]error

// probe runs specs ("tcp IP", "udp IP", "icmp IP", "dns IP") from a child
// process in the agent's network namespace and cgroup.
func (l *isoLab) probe(t *testing.T, ns string, specs ...string) probeResult {
	t.Helper()
	cg, err := os.Open(l.cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns, os.Args[0], "-test.run=^TestHelperIsolationProbe$", "--"}, specs...)...)
	cmd.Env = append(os.Environ(), isoProbeEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("probe helper: %v\n%s", err, out)
	}
	res := probeResult{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "PROBE ")
		if !ok {
			continue
		}
		spec, verdict, _ := strings.Cut(line, " => ")
		if verdict == "ok" {
			res[spec] = nil
		} else {
			res[spec] = errors.New(verdict)
		}
	}
	if len(res) != len(specs) {
		t.Fatalf("probe helper answered %d probes, want %d:\n%s", len(res), len(specs), out)
	}
	return res
}

// all lists the three probes (tcp, udp, icmp) of each address.
func all(addrs ...netip.Addr) []string {
	var out []string
	for _, a := range addrs {
		for _, p := range []string{"tcp", "udp", "icmp"} {
			out = append(out, p+" "+a.String())
		}
	}
	return out
}

// mismatches lists the specs whose outcome is not the wanted one.
func (r probeResult) mismatches(want map[string]bool) []string {
	var bad []string
	for spec, ok := range want {
		err, seen := r[spec]
		switch {
		case !seen:
			bad = append(bad, spec+": not probed")
		case ok && err != nil:
			bad = append(bad, fmt.Sprintf("%s: got %v, want it to work", spec, err))
		case !ok && err == nil:
			bad = append(bad, spec+": got through, want blocked")
		}
	}
	return bad
}

// TestHelperIsolationProbe is the child process of isoLab.probe; it does
// nothing in a normal test run.
func TestHelperIsolationProbe(t *testing.T) {
	if os.Getenv(isoProbeEnv) == "" {
		t.Skip("helper process for TestIsolation")
	}
	netns.RunProbes(isoProbe)
}

// isoProbe is one exchange bounded by 1 s (a failure bound, not a timing
// assertion): TCP connect and read, UDP echo, ICMP echo, a DNS question.
func isoProbe(proto, addr string) error {
	const timeout = time.Second
	if proto != "dns" {
		return netns.Probe(proto, addr, isoProbePort, timeout)
	}
	m := new(dns.Msg)
	m.SetQuestion(isoAllowName+".", dns.TypeA)
	r, _, err := (&dns.Client{Net: "udp", Timeout: timeout}).Exchange(m, net.JoinHostPort(addr, "53"))
	if err != nil {
		return err
	}
	if len(r.Answer) == 0 {
		return fmt.Errorf("no answer (rcode %d)", r.Rcode)
	}
	return nil
}

// lastRun is the process log since its last start line.
func lastRun(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if i := strings.LastIndex(s, "=== "); i >= 0 {
		s = s[i:]
	}
	return s
}

// TestIsolation isolates the agent through the cloud's API and proves it
// from the agent's namespace and cgroup: TCP, UDP and ICMP to a
// non-allowed address fail while the relay connection (telemetry exactly
// once, command results), the resolver and the tenant's allowed addresses
// (by CIDR and by name) keep working; kill -9 of the agent leaves the
// isolation in place; after a "reboot" (pins gone) the agent isolates again
// from its persisted state with the relay down, before any connection;
// cancel_isolation restores everything and removes the pins.
func TestIsolation(t *testing.T) {
	lab := newIsoLab(t)
	d := newDMZSite(t, dmzOptions{policy: netns.Open})

	resolver := d.net.AddHost(netns.DMZ, "dns")
	byCIDR := d.net.AddHost(netns.DMZ, "ok-cidr")
	byName := d.net.AddHost(netns.DMZ, "ok-name")
	denied := d.net.AddHost(netns.DMZ, "denied")
	for _, h := range []*netns.Host{byCIDR, byName, denied} {
		servePeer(t, h.Netns, h.IP)
	}
	addIPv6Peers(t, d.net.Agent().Netns)
	serveDNS(t, resolver, byName.IP)
	resolv := filepath.Join(d.dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+resolver.IP.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.cloud.Admin.SetAllowList(d.ctx, d.site.TenantID, []string{byCIDR.IP.String() + "/32", allowed6.String() + "/128"}, []string{isoAllowName}); err != nil {
		t.Fatal(err)
	}

	a, w := d.agentWith("agent-1", func(o *harness.AgentOptions) {
		o.Place = place(d.net.Agent())
		o.Cgroup = lab.cgroup
		o.ResolvConf = resolv
		o.Isolation = map[string]any{"cgroup": lab.cgroup, "pin_dir": lab.pinDir}
	})
	lab.agent = a
	writeLines(t, w, 3, 50)
	d.waitAgent(a, "agent connected", func(s harness.AgentStatus) bool { return s.State == "connected" })
	st, err := a.Status()
	if err != nil {
		t.Fatal(err)
	}
	agentID := st.AgentID
	if b, err := os.ReadFile(filepath.Join(lab.cgroup, "cgroup.procs")); err != nil || len(strings.Fields(string(b))) == 0 {
		t.Fatalf("agent not in cgroup %s: %q, %v", lab.cgroup, b, err)
	}
	agentNS := d.net.Agent().Netns

	everything := append(all(byCIDR.IP, byName.IP, denied.IP, allowed6, denied6), "dns "+resolver.IP.String())
	isolated := map[string]bool{"dns " + resolver.IP.String(): true}
	open := map[string]bool{}
	for _, s := range all(byCIDR.IP, byName.IP, allowed6) {
		isolated[s], open[s] = true, true
	}
	for _, s := range all(denied.IP, denied6) {
		isolated[s], open[s] = false, true
	}
	open["dns "+resolver.IP.String()] = true
	// waitProbes polls the probes until they give want, failing with the
	// last mismatches.
	waitProbes := func(what string, want map[string]bool, extra func() error) {
		t.Helper()
		var bad []string
		err := harness.WaitFor(d.ctx, 30*time.Second, what, func() (bool, error) {
			bad = lab.probe(t, agentNS, everything...).mismatches(want)
			if len(bad) > 0 {
				return false, errors.New(strings.Join(bad, "; "))
			}
			if extra != nil {
				if err := extra(); err != nil {
					return false, err
				}
			}
			return true, nil
		})
		if err != nil {
			t.Fatalf("%v\nagent log:\n%s", err, a.Tail(20))
		}
	}
	action := func(typ string) {
		t.Helper()
		act, err := d.cloud.Admin.CreateAction(d.ctx, d.site.TenantID, agentID, typ, json.RawMessage(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		var got adminapi.Action
		err = harness.WaitFor(d.ctx, 60*time.Second, typ+" finished", func() (bool, error) {
			got, err = d.cloud.Admin.GetAction(d.ctx, d.site.TenantID, act.ID)
			return err == nil && got.Finished(), fmt.Errorf("state %s", got.State)
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.Result == nil || !got.Result.OK {
			t.Fatalf("%s failed: %+v", typ, got.Result)
		}
	}
	pinned := func() error {
		if p := lab.pins(); len(p) == 0 {
			return fmt.Errorf("no pins under %s", lab.pinDir)
		}
		return nil
	}

	waitProbes("everything reachable before isolation", open, nil)

	action("isolate")
	waitProbes("isolated: only the relay, the resolver and the allow-list", isolated, pinned)
	res := lab.probe(t, agentNS, all(denied.IP, denied6)...)
	for _, spec := range all(denied.IP, denied6) {
		t.Logf("isolated: %s => %v", spec, res[spec])
	}
	t.Logf("isolated; pins: %v", lab.pins())
	// The relay connection keeps working: command results and telemetry.
	action("heartbeat_now")
	writeLines(t, w, 3, 50)
	d.waitExactlyOnce(time.Minute, []*harness.Agent{a}, w)

	// kill -9: the pinned programs hold the isolation with no process.
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	waitProbes("still isolated after kill -9 of the agent", isolated, pinned)

	// A reboot: the relay is unreachable and the pins are gone (bpffs is
	// memory). The agent isolates again from isolation.json at start,
	// before any connection.
	if err := d.relay.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(lab.pinDir); err != nil {
		t.Fatal(err)
	}
	waitProbes("open after the pins are removed by hand", open, nil)
	writeLines(t, w, 2, 50)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	waitProbes("isolated again at start with the relay down", isolated, func() error {
		if err := pinned(); err != nil {
			return err
		}
		if !a.Running() {
			return fmt.Errorf("agent exited: %v", a.ExitErr())
		}
		return nil
	})
	if s, err := a.Status(); err == nil && s.State == "connected" {
		t.Fatalf("agent says connected with the relay down: %+v", s)
	}
	if d.relay.Running() {
		t.Fatal("relay running; want it down while the agent restores isolation")
	}
	if run := lastRun(t, a.LogPath); !strings.Contains(run, "host isolated") || strings.Contains(run, "connected to relay") {
		t.Fatalf("agent log since its restart: want \"host isolated\" and no connection:\n%s", run)
	}

	// The relay back: the agent connects (still isolated) and the buffered
	// lines arrive; cancel restores everything and removes every pin.
	if err := d.relay.Restart(d.ctx); err != nil {
		t.Fatal(err)
	}
	d.waitAgent(a, "agent connected again", func(s harness.AgentStatus) bool { return s.State == "connected" })
	waitProbes("still isolated once connected", isolated, pinned)
	action("cancel_isolation")
	waitProbes("everything reachable after cancel_isolation", open, func() error {
		if p := lab.pins(); len(p) > 0 {
			return fmt.Errorf("pins left: %v", p)
		}
		return nil
	})
	writeLines(t, w, 2, 50)
	d.waitExactlyOnce(time.Minute, []*harness.Agent{a}, w)
}
