// Package netns is the test kit for system tests that need real networks:
// network namespaces joined by veth pairs through a router namespace that
// runs an nftables firewall, with addresses only from the documentation and
// benchmarking ranges. Everything a Topology makes (namespaces, veths, the
// processes in them) is removed in t.Cleanup, also when the test fails.
//
// It needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); without it, New skips the
// test with "needs root for network namespaces".
package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Zone is one network behind the router, a /24 from a documentation range.
type Zone struct {
	Name   string
	Prefix netip.Prefix
}

// The zones every topology has. Hosts get a /30 each out of their zone.
var (
	Agents = Zone{"agents", netip.MustParsePrefix("198.51.100.0/24")} // TEST-NET-2
	DMZ    = Zone{"dmz", netip.MustParsePrefix("192.0.2.0/24")}       // TEST-NET-1
	Cloud  = Zone{"cloud", netip.MustParsePrefix("203.0.113.0/24")}   // TEST-NET-3
)

// Host is a network namespace with one link to the router.
type Host struct {
	Name  string     // short role name, e.g. "relay-1"
	Netns string     // the namespace, for `ip netns exec`
	Zone  Zone       // the network it sits in
	IP    netip.Addr // its address (its /30's second address)
	GW    netip.Addr // the router's address on its link
	top   *Topology
}

// Topology is a router namespace and the hosts around it.
type Topology struct {
	t      testing.TB
	id     string // random suffix shared by every name
	Router string // the router's namespace

	mu      sync.Mutex
	hosts   []*Host
	perZone map[string]int
}

// RequireRoot skips t unless the test runs as root with iproute2 and nft.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, b := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("needs %s (iproute2, nftables) for network namespaces: %v", b, err)
		}
	}
}

// New makes the router namespace (forwarding on, firewall open) with a
// unique name; hosts are added with AddHost.
func New(t testing.TB) *Topology {
	t.Helper()
	RequireRoot(t)
	var b [3]byte
	rand.Read(b[:])
	top := &Topology{t: t, id: hex.EncodeToString(b[:]), perZone: map[string]int{}}
	top.Router = top.nsName("rt")
	t.Cleanup(top.teardown)
	if err := top.addNetns(top.Router); err != nil {
		t.Fatal(err)
	}
	for _, kv := range []string{"net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"} {
		if _, err := Exec(top.Router, "sysctl", "-qw", kv); err != nil {
			t.Fatal(err)
		}
	}
	if err := top.Nft(Open.ruleset(nil)); err != nil {
		t.Fatal(err)
	}
	return top
}

// ID is the random suffix in every name this topology made.
func (top *Topology) ID() string { return top.id }

func (top *Topology) nsName(role string) string { return "gh" + top.id + "-" + role }

func (top *Topology) addNetns(name string) error {
	if _, err := run("ip", "netns", "add", name); err != nil {
		return err
	}
	top.mu.Lock()
	top.hosts = append(top.hosts, &Host{Netns: name}) // teardown deletes it even if setup fails below
	top.mu.Unlock()
	_, err := run("ip", "-n", name, "link", "set", "lo", "up")
	return err
}

// AddHost makes a namespace in zone with a veth link to the router, its
// own /30 and a default route through the router.
func (top *Topology) AddHost(zone Zone, name string) *Host {
	top.t.Helper()
	h, err := top.addHost(zone, name)
	if err != nil {
		top.t.Fatalf("add host %s: %v", name, err)
	}
	return h
}

func (top *Topology) addHost(zone Zone, name string) (*Host, error) {
	top.mu.Lock()
	top.perZone[zone.Name]++
	i := top.perZone[zone.Name]
	idx := len(top.hosts)
	top.mu.Unlock()
	if i > 63 {
		return nil, fmt.Errorf("zone %s is full (63 hosts)", zone.Name)
	}
	base := zone.Prefix.Addr().As4()
	gw, ip := base, base
	gw[3], ip[3] = byte(4*i+1), byte(4*i+2)
	h := &Host{Name: name, Netns: top.nsName(name), Zone: zone, GW: netip.AddrFrom4(gw), IP: netip.AddrFrom4(ip), top: top}
	if err := top.addNetns(h.Netns); err != nil {
		return nil, err
	}
	top.mu.Lock()
	top.hosts[len(top.hosts)-1] = h
	top.mu.Unlock()
	// The router's end is named for the link; the host's end is eth0.
	rtIf := fmt.Sprintf("h%d", idx)
	steps := [][]string{
		{"ip", "-n", top.Router, "link", "add", rtIf, "type", "veth", "peer", "name", "eth0", "netns", h.Netns},
		{"ip", "-n", top.Router, "addr", "add", h.GW.String() + "/30", "dev", rtIf},
		{"ip", "-n", top.Router, "link", "set", rtIf, "up"},
		{"ip", "-n", h.Netns, "addr", "add", h.IP.String() + "/30", "dev", "eth0"},
		{"ip", "-n", h.Netns, "link", "set", "eth0", "up"},
		{"ip", "-n", h.Netns, "route", "add", "default", "via", h.GW.String()},
	}
	for _, s := range steps {
		if _, err := run(s[0], s[1:]...); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Hosts returns every host, in the order they were added.
func (top *Topology) Hosts() []*Host {
	top.mu.Lock()
	defer top.mu.Unlock()
	var hs []*Host
	for _, h := range top.hosts {
		if h.top != nil {
			hs = append(hs, h)
		}
	}
	return hs
}

// Nft replaces the router's firewall (table inet gatehouse) with ruleset, a
// complete `table inet gatehouse { ... }` definition, in one transaction.
func (top *Topology) Nft(ruleset string) error {
	script := "table inet gatehouse\ndelete table inet gatehouse\n" + ruleset
	cmd := exec.Command("ip", "netns", "exec", top.Router, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %w: %s\n%s", top.Router, err, bytes.TrimSpace(out), script)
	}
	return nil
}

// NftList returns the router's current ruleset, for failure messages.
func (top *Topology) NftList() string {
	out, err := Exec(top.Router, "nft", "list", "ruleset")
	if err != nil {
		return err.Error()
	}
	return out
}

// teardown kills what still runs in the namespaces and deletes them (their
// veths go with them). Errors are logged: cleanup goes on.
func (top *Topology) teardown() {
	top.mu.Lock()
	hosts := append([]*Host(nil), top.hosts...)
	top.mu.Unlock()
	names := []string{top.Router}
	for _, h := range hosts {
		names = append(names, h.Netns)
	}
	for _, n := range names {
		killAll(n)
	}
	for _, n := range names {
		if _, err := run("ip", "netns", "del", n); err != nil && !strings.Contains(err.Error(), "No such file") {
			top.t.Logf("netns teardown: %v", err)
		}
	}
}

// killAll SIGKILLs every process in namespace ns (all started by the test)
// and waits briefly for them to go.
func killAll(ns string) {
	for range 50 {
		out, err := run("ip", "netns", "pids", ns)
		if err != nil || strings.TrimSpace(out) == "" {
			return
		}
		for _, f := range strings.Fields(out) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 && pid != os.Getpid() {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Exec runs a command inside namespace ns and returns its combined output.
func Exec(ns, name string, args ...string) (string, error) {
	return run("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Command prepares a command that runs inside namespace ns.
func Command(ns, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Addr is "IP:port" on the host.
func (h *Host) Addr(port int) string { return net.JoinHostPort(h.IP.String(), fmt.Sprint(port)) }

// Exec runs a command inside the host's namespace.
func (h *Host) Exec(name string, args ...string) (string, error) { return Exec(h.Netns, name, args...) }

// DialContext dials from inside the host's namespace, so the test process
// reaches the host's own loopback (admin ports on 127.0.0.1) and its
// network. The socket is made on a thread switched into the namespace; the
// thread is thrown away if it cannot be switched back.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return DialIn(ctx, h.Netns, network, addr)
}

// DialIn dials network addr from inside namespace ns.
func DialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := Do(ns, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ListenIn listens on a TCP address inside namespace ns.
func ListenIn(ns, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := Do(ns, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// ListenPacketIn opens a UDP socket inside namespace ns.
func ListenPacketIn(ns, network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := Do(ns, func() error {
		var err error
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// Do runs f on an OS thread switched into namespace ns. Sockets f makes
// stay in ns for their whole life. f must not start goroutines that make
// sockets. The thread is discarded if it cannot be switched back.
func Do(ns string, f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("open netns %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("enter netns %s: %w", ns, err)
			return
		}
		err = f()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else: the goroutine ends locked and the runtime discards the thread
		ch <- err
	}()
	return <-ch
}
