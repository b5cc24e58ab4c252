package netflow

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/agent/internal/collect"
	"github.com/gatehouse/gatehouse/agent/internal/collect/collecttest"
	"github.com/gatehouse/gatehouse/agent/internal/ecs"
)

func requireEBPF(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("eBPF collector tests need root: skipped")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("kernel has no BTF (/sys/kernel/btf/vmlinux): skipped")
	}
}

// start runs a collector; drainEvery > 0 reads on ticks, as the agent does.
func start(t *testing.T, tier collect.Tier, drainEvery time.Duration) (*Collector, *collecttest.MemSink) {
	t.Helper()
	sink := &collecttest.MemSink{}
	c := New(Options{Sink: sink, Tier: tier, DrainEvery: drainEvery, Source: ecs.Source{Hostname: "h", AgentID: "a", Version: "test"}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	case err := <-done:
		cancel()
		t.Skipf("netflow collector cannot run here: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("collector not attached after 30s")
	}
	return c, sink
}

type flow struct{ action, src, dst string }

func flowOf(m map[string]any) flow {
	ap := func(side string) string {
		ip, _ := collecttest.Get(m, side+".ip").(string)
		port, _ := collecttest.Get(m, side+".port").(float64)
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return ""
		}
		return netip.AddrPortFrom(a, uint16(port)).String()
	}
	a, _ := collecttest.Get(m, "event.action").(string)
	return flow{a, ap("source"), ap("destination")}
}

func waitFlow(t *testing.T, sink *collecttest.MemSink, want flow) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, ev := range sink.Events() {
			if flowOf(ev) == want {
				return ev
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no event %+v within 20s; got %d events", want, len(sink.Events()))
	return nil
}

// connect makes one loopback connection and closes both ends; it returns
// the client's and the server's addresses.
func connect(t *testing.T, network, addr string) (client, server string) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("listen %s %s: %v", network, addr, err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	cc, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	if sc == nil {
		t.Fatal("accept failed")
	}
	client, server = cc.LocalAddr().String(), ln.Addr().String()
	cc.Close()
	sc.Close()
	return client, server
}

func TestTCPConnectAcceptClose(t *testing.T) {
	requireEBPF(t)
	_, sink := start(t, collect.TierWorkstation, 300*time.Millisecond)
	for _, tc := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		t.Run(tc.network, func(t *testing.T) {
			client, server := connect(t, tc.network, tc.addr)
			pid := float64(os.Getpid())
			for _, want := range []flow{
				{"connection-established", client, server},
				{"connection-accepted", client, server},
			} {
				ev := waitFlow(t, sink, want)
				if got := collecttest.Get(ev, "process.pid"); got != pid {
					t.Errorf("%s: process.pid: got %v, want %v", want.action, got, pid)
				}
			}
			// Each end closes: the client's socket (local=client) and the
			// server's (local=server), both with their process.
			ev := waitFlow(t, sink, flow{"connection-closed", client, server})
			if got := collecttest.Get(ev, "process.pid"); got != pid {
				t.Errorf("close: process.pid: got %v, want %v", got, pid)
			}
			waitFlow(t, sink, flow{"connection-closed", server, client})
		})
	}
}

func TestServerTierConnectOnly(t *testing.T) {
	requireEBPF(t)
	c, sink := start(t, collect.TierServer, 0)
	client, server := connect(t, "tcp4", "127.0.0.1:0")
	waitFlow(t, sink, flow{"connection-established", client, server})
	// A second connection's connect event comes after the first's closes
	// would have: none may be there.
	client2, server2 := connect(t, "tcp4", "127.0.0.1:0")
	waitFlow(t, sink, flow{"connection-established", client2, server2})
	for _, ev := range sink.Events() {
		if a := collecttest.Get(ev, "event.action"); a != "connection-established" {
			t.Errorf("server tier reported %v", a)
		}
	}
	// Switched at run time: accepts are reported.
	if err := c.SetTier(collect.TierWorkstation); err != nil {
		t.Fatal(err)
	}
	client3, server3 := connect(t, "tcp4", "127.0.0.1:0")
	waitFlow(t, sink, flow{"connection-accepted", client3, server3})
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(make([]byte, recordSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err == nil && (r.Type < typeConnect || r.Type > typeClose) {
			t.Errorf("accepted type %d", r.Type)
		}
	})
}

// A burst must not wait for a far tick and overflow the ring: a ring a
// quarter full wakes the reader. With an hour between ticks, only that
// wake-up (and the first record's) can deliver these events in time.
func TestBurstWakesReaderBeforeTick(t *testing.T) {
	requireEBPF(t)
	c, sink := start(t, collect.TierWorkstation, time.Hour)
	const conns = 150 // 4 records each: 600 x 80 bytes, past a quarter of 64 KiB
	for range conns {
		connect(t, "tcp4", "127.0.0.1:0")
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(sink.Events()) < conns && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := len(sink.Events()); got < conns {
		t.Fatalf("got %d events within 20s of a %d-connection burst, want at least %d", got, conns, conns)
	}
	if lost := c.Stats().KernelLost; lost != 0 {
		t.Errorf("kernel lost %d records, want 0", lost)
	}
}
