package isolate

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gatehouse/gatehouse/internal/netns"
)

// The enforcing side runs in namespace A inside a dedicated child cgroup v2
// (the programs attach there, never to the host's root cgroup); namespace
// B holds the peers: .2 is not allowed, .3 is.
const (
	addrA4, denied4, allowed4 = "10.231.0.1", "10.231.0.2", "10.231.0.3"
	addrA6, denied6, allowed6 = "fd00:231::1", "fd00:231::2", "fd00:231::3"
	probePort                 = 7000
	probeEnv                  = "GATEHOUSE_ISOLATE_PROBE"
)

// lab is two namespaces, a child cgroup and a private bpffs.
type lab struct {
	nsA, nsB string
	cgroup   string
	pinDir   string
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newLab(t *testing.T) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces, cgroups and eBPF")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
	root, err := CgroupRoot()
	if err != nil {
		t.Skipf("no cgroup v2: %v", err)
	}
	loadPrivate(t) // skips without BPF
	tmp := t.TempDir()
	r := make([]byte, 3)
	rand.Read(r)
	id := hex.EncodeToString(r)
	l := &lab{nsA: "ghisoA" + id, nsB: "ghisoB" + id, cgroup: filepath.Join(root, "gatehouse-isolate-test-"+id),
		pinDir: filepath.Join(tmp, "bpf", "gatehouse")}
	if err := os.MkdirAll(filepath.Dir(l.pinDir), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(filepath.Dir(l.pinDir), unix.MNT_DETACH) })
	if err := os.Mkdir(l.cgroup, 0o755); err != nil {
		t.Skipf("no cgroup v2: create child cgroup: %v", err)
	}
	t.Cleanup(func() { os.Remove(l.cgroup) })
	run(t, "ip", "netns", "add", l.nsA)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.nsA).Run() })
	run(t, "ip", "netns", "add", l.nsB)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.nsB).Run() })
	run(t, "ip", "link", "add", "vA"+id, "netns", l.nsA, "type", "veth", "peer", "name", "vB"+id, "netns", l.nsB)
	for _, c := range [][]string{
		{l.nsA, "ip", "link", "set", "lo", "up"},
		{l.nsB, "ip", "link", "set", "lo", "up"},
		{l.nsA, "ip", "addr", "add", addrA4 + "/24", "dev", "vA" + id},
		{l.nsA, "ip", "addr", "add", addrA6 + "/64", "dev", "vA" + id, "nodad"},
		{l.nsB, "ip", "addr", "add", denied4 + "/24", "dev", "vB" + id},
		{l.nsB, "ip", "addr", "add", allowed4 + "/24", "dev", "vB" + id},
		{l.nsB, "ip", "addr", "add", denied6 + "/64", "dev", "vB" + id, "nodad"},
		{l.nsB, "ip", "addr", "add", allowed6 + "/64", "dev", "vB" + id, "nodad"},
		{l.nsA, "ip", "link", "set", "vA" + id, "up"},
		{l.nsB, "ip", "link", "set", "vB" + id, "up"},
	} {
		run(t, append([]string{"ip", "netns", "exec"}, c...)...)
	}
	l.servePeers(t)
	return l
}

// inNetns runs fn on a thread switched into the named namespace; sockets
// made there stay in it.
func inNetns(t *testing.T, name string, fn func()) {
	t.Helper()
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			done <- err
			return
		}
		defer self.Close()
		target, err := os.Open(filepath.Join("/run/netns", name))
		if err != nil {
			done <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- err // the thread stays locked and dies with the goroutine
			return
		}
		runtime.UnlockOSThread()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatalf("netns %s: %v", name, err)
	}
}

// servePeers starts a TCP accept-and-close server and a UDP echo server on
// every address of namespace B (the kernel answers pings).
func (l *lab) servePeers(t *testing.T) {
	var ln net.Listener
	var pcs []net.PacketConn
	var errs []error
	inNetns(t, l.nsB, func() {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", probePort))
		errs = append(errs, err)
		// One UDP socket per address: a wildcard socket would answer from
		// the primary address and the client would ignore the reply.
		for _, a := range []string{denied4, allowed4, denied6, allowed6} {
			pc, err := net.ListenPacket("udp", net.JoinHostPort(a, fmt.Sprint(probePort)))
			errs = append(errs, err)
			if err == nil {
				pcs = append(pcs, pc)
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ln.Close()
		for _, pc := range pcs {
			pc.Close()
		}
	})
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
	for _, pc := range pcs {
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
}

// probes runs every probe from namespace A inside the test cgroup (a
// child process: sockets belong to the cgroup of the process that made
// them) and returns "proto addr" -> nil or the failure.
func (l *lab) probes(t *testing.T, targets ...string) map[string]error {
	t.Helper()
	cg, err := os.Open(l.cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	var specs []string
	for _, a := range targets {
		for _, p := range []string{"tcp", "udp", "icmp"} {
			specs = append(specs, p+" "+a)
		}
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.nsA, os.Args[0], "-test.run=^TestProbeHelper$", "--"}, specs...)...)
	cmd.Env = append(os.Environ(), probeEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("probe helper: %v\n%s", err, out)
	}
	res := map[string]error{}
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

// TestProbeHelper is the child process of lab.probes; it does nothing in a
// normal test run.
func TestProbeHelper(t *testing.T) {
	if os.Getenv(probeEnv) == "" {
		t.Skip("helper process for the enforcement tests")
	}
	netns.RunProbes(func(proto, addr string) error { return netns.Probe(proto, addr, probePort, time.Second) })
}

func (l *lab) isolator(t *testing.T, state string) *Isolator {
	t.Helper()
	iso, err := New(Options{
		PinDir: l.pinDir, StateFile: state, CgroupPath: l.cgroup,
		Relays:     []string{"10.231.0.4:7443"},
		DNSServers: []netip.Addr{netip.MustParseAddr("10.231.0.53")},
		Resolver:   fakeResolver{},
	})
	if err != nil {
		t.Fatal(err)
	}
	return iso
}

type fakeResolver struct{}

func (fakeResolver) Resolve(context.Context, string) ([]netip.Addr, time.Duration, error) {
	return nil, 0, errors.New("no names in this test")
}

// checkProbes wants every probe to allowed addresses to pass and every
// probe to denied ones to pass only when isolated is false.
func (l *lab) checkProbes(t *testing.T, stage string, isolated bool) {
	t.Helper()
	res := l.probes(t, denied4, allowed4, denied6, allowed6)
	for spec, err := range res {
		denied := strings.HasSuffix(spec, denied4) || strings.HasSuffix(spec, denied6)
		switch {
		case denied && isolated && err == nil:
			t.Errorf("%s: %s to a non-allowed address: got success, want failure", stage, spec)
		case (!denied || !isolated) && err != nil:
			t.Errorf("%s: %s: got %v, want success", stage, spec, err)
		}
	}
}

func TestEnforcementRealTraffic(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "isolation.json")
	l.waitReachable(t)
	l.checkProbes(t, "before isolation", false)

	iso := l.isolator(t, state)
	if err := iso.Restore(ctx); err != nil {
		t.Fatalf("Restore without state: %v", err)
	}
	pol := Policy{Isolated: true, AllowCIDRs: []netip.Prefix{
		netip.MustParsePrefix(allowed4 + "/32"), netip.MustParsePrefix(allowed6 + "/128")}}
	if err := iso.Apply(ctx, pol); err != nil {
		t.Fatalf("Apply isolated: %v", err)
	}
	st := iso.Status()
	if !st.Isolated || !st.Enforced {
		t.Fatalf("status after isolate: got isolated %v enforced %v, want both", st.Isolated, st.Enforced)
	}
	for _, want := range []string{"10.231.0.4/32", "10.231.0.53/32", "127.0.0.0/8", "::1/128", allowed6 + "/128"} {
		found := false
		for _, p := range st.Allowed {
			found = found || p.String() == want
		}
		if !found {
			t.Errorf("allowed prefixes %v: want %s among them", st.Allowed, want)
		}
	}
	l.checkProbes(t, "isolated", true)
	if st := iso.Status(); st.DroppedEgress == 0 {
		t.Errorf("egress drops after denied probes: got 0, want > 0")
	}

	// "Crash": the Go objects go away without unpinning.
	iso.Close()
	iso.Close()
	l.checkProbes(t, "after crash", true)

	// Restart: Restore re-applies from isolation.json.
	iso2 := l.isolator(t, state)
	defer iso2.Close()
	if err := iso2.Restore(ctx); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got := iso2.Policy(); !got.Isolated || len(got.AllowCIDRs) != 2 {
		t.Fatalf("restored policy: got %+v, want isolated with 2 CIDRs", got)
	}
	l.checkProbes(t, "after restore", true)

	// The allow-list changes while isolated: .2 becomes allowed, .3 not.
	if err := iso2.Apply(ctx, Policy{Isolated: true, AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.231.0.0/30")}}); err != nil {
		t.Fatal(err)
	}
	if err := probeOne(l, t, "tcp", denied4); err != nil {
		t.Errorf("tcp to %s after allowing 10.231.0.0/30: got %v, want success", denied4, err)
	}
	if err := probeOne(l, t, "tcp", allowed6); err == nil {
		t.Errorf("tcp to %s after removing it from the allow-list: got success, want failure", allowed6)
	}

	// Cancel: everything passes and the pins are gone.
	if err := iso2.Apply(ctx, Policy{}); err != nil {
		t.Fatalf("Apply cancel: %v", err)
	}
	l.checkProbes(t, "after cancel", false)
	if _, err := os.Stat(l.pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir after cancel: got %v, want it gone", err)
	}
	if iso2.Status().Enforced {
		t.Errorf("enforced after cancel: got true, want false")
	}
}

// waitReachable waits (bounded) until the fresh links pass every probe.
func (l *lab) waitReachable(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var failed []string
		for spec, err := range l.probes(t, denied4, allowed4, denied6, allowed6) {
			if err != nil {
				failed = append(failed, spec+": "+err.Error())
			}
		}
		if len(failed) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespaces not reachable before isolation: %v", failed)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func probeOne(l *lab, t *testing.T, proto, addr string) error {
	res := l.probes(t, addr)
	return res[proto+" "+addr]
}

// Uninstall's part: an isolated host whose agent is gone is released by
// RemovePins, and nothing is left pinned.
func TestRemovePinsReleasesHost(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	l.waitReachable(t)
	iso := l.isolator(t, filepath.Join(t.TempDir(), "isolation.json"))
	pol := Policy{Isolated: true, AllowCIDRs: []netip.Prefix{
		netip.MustParsePrefix(allowed4 + "/32"), netip.MustParsePrefix(allowed6 + "/128")}}
	if err := iso.Apply(ctx, pol); err != nil {
		t.Fatalf("Apply isolated: %v", err)
	}
	iso.Close() // the agent stops; the pinned links keep enforcing
	l.checkProbes(t, "agent stopped", true)
	if !Pinned(l.pinDir) {
		t.Fatal("Pinned after isolating: got false, want true")
	}
	if err := RemovePins(l.pinDir); err != nil {
		t.Fatalf("RemovePins: %v", err)
	}
	l.checkProbes(t, "pins removed", false)
	if _, err := os.Stat(l.pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir after RemovePins: got %v, want it gone", err)
	}
	if err := RemovePins(l.pinDir); err != nil {
		t.Errorf("RemovePins again: got %v, want nil", err)
	}
}
