package transport

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// pathCutter stands between the agent and a relay on a port of its own,
// forwarding UDP and TCP to the relay's port; cutUDP makes it drop the
// agent's UDP silently from then on, as a firewall that starts dropping
// UDP from the agents' network: the relay's datagrams (retransmissions,
// keep-alives) still reach the agent, as conntrack lets replies through.
type pathCutter struct {
	addr   string
	target *net.UDPAddr
	udp    *net.UDPConn
	tcp    net.Listener
	cut    atomic.Bool

	mu      sync.Mutex
	clients map[string]*net.UDPConn // agent address -> socket to the relay
}

func newPathCutter(tb testing.TB, relayAddr string) *pathCutter {
	tb.Helper()
	target, err := net.ResolveUDPAddr("udp", relayAddr)
	if err != nil {
		tb.Fatal(err)
	}
	p := &pathCutter{target: target, clients: map[string]*net.UDPConn{}}
	for {
		p.udp, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			tb.Fatal(err)
		}
		p.addr = p.udp.LocalAddr().String()
		if p.tcp, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		p.udp.Close()
	}
	var wg sync.WaitGroup
	wg.Go(p.serveUDP)
	wg.Go(func() { p.serveTCP(relayAddr, &wg) })
	tb.Cleanup(func() {
		p.udp.Close()
		p.tcp.Close()
		p.mu.Lock()
		for _, c := range p.clients {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	return p
}

func (p *pathCutter) cutUDP() { p.cut.Store(true) }

// everyUntil calls f every d until stop is closed.
func everyUntil(stop <-chan struct{}, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			f()
		}
	}
}

func (p *pathCutter) serveUDP() {
	buf := make([]byte, 65536)
	for {
		n, from, err := p.udp.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if p.cut.Load() {
			continue
		}
		p.mu.Lock()
		up := p.clients[from.String()]
		if up == nil {
			if up, err = net.DialUDP("udp", nil, p.target); err != nil {
				p.mu.Unlock()
				continue
			}
			p.clients[from.String()] = up
			go p.back(up, from)
		}
		p.mu.Unlock()
		up.Write(buf[:n])
	}
}

// back carries the relay's datagrams to the agent address from.
func (p *pathCutter) back(up *net.UDPConn, from *net.UDPAddr) {
	buf := make([]byte, 65536)
	for {
		n, err := up.Read(buf)
		if err != nil {
			return
		}
		p.udp.WriteToUDP(buf[:n], from)
	}
}

func (p *pathCutter) serveTCP(relayAddr string, wg *sync.WaitGroup) {
	for {
		c, err := p.tcp.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer c.Close()
			up, err := net.Dial("tcp", relayAddr)
			if err != nil {
				return
			}
			defer up.Close()
			go func() { io.Copy(up, c); up.Close() }()
			io.Copy(c, up)
		})
	}
}

// TestStalledQUICMovesToTCP: the agent's UDP starts being dropped under a
// live QUIC session with batches flowing, while the relay's still arrives; the agent notices the unanswered writes,
// races a TCP leg and moves to it without its session failing (no idle
// timeout, no reconnect), and every batch is spooled.
func TestStalledQUICMovesToTCP(t *testing.T) {
	relay := newFakeRelay(t)
	cutter := newPathCutter(t, relay.addr)
	var logs syncBuffer
	a := newAgentWith(t, relay, "", func(o *Options) {
		o.Relays = []string{cutter.addr}
		o.TCPDelay = 10 * time.Second // QUIC wins the first race
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	a.add(t, bulk, 3)
	a.run(t)
	waitFor(t, "connected over quic, 3 spooled", func() bool {
		return a.client.Status().Transport == TransportQUIC && a.ring.Stats().Spooled == 3
	})
	cutter.cutUDP()
	cut := time.Now()
	// The relay keeps talking (receipts) and its datagrams still arrive:
	// packets received are no proof the agent's get through.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { everyUntil(stop, 20*time.Millisecond, func() { relay.deliver(1) }) })
	defer func() { close(stop); wg.Wait() }()
	a.add(t, bulk, 5)
	a.add(t, sec, 2)
	waitFor(t, "moved to tcp", func() bool { return a.client.Status().Transport == TransportTCP })
	t.Logf("moved to tcp %s after the cut", time.Since(cut).Round(time.Millisecond))
	waitFor(t, "all 10 spooled", func() bool { st := a.ring.Stats(); return st.Spooled+int(st.DeliveredTotal) == 10 })
	out := logs.String()
	if !strings.Contains(out, "moved from quic to tcp without reconnecting") {
		t.Errorf("log does not say the session moved over:\n%s", out)
	}
	if strings.Contains(out, "relay connection failed") {
		t.Errorf("the session failed (QUIC timed out) instead of moving over:\n%s", out)
	}
	if r, _ := a.client.mem.get(networkKey(cutter.addr)); r.Transport != TransportTCP {
		t.Errorf("remembered: got %q, want tcp", r.Transport)
	}
}

// TestSlowRelayStaysOnQUIC: a relay slow to acknowledge batches (its disk,
// not the path) is no stall: QUIC's own ACKs keep coming, so the agent
// never starts a TCP leg.
func TestSlowRelayStaysOnQUIC(t *testing.T) {
	relay := newFakeRelay(t)
	var logs syncBuffer
	a := newAgentWith(t, relay, "", func(o *Options) {
		o.TCPDelay = 10 * time.Second
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	relay.onBatch = func(b *agentv1.EventBatch) *agentv1.BatchAck {
		time.Sleep(4 * minStall)
		return &agentv1.BatchAck{Seq: b.GetSeq(), Status: agentv1.BatchAck_STATUS_SPOOLED}
	}
	a.add(t, bulk, 3)
	a.run(t)
	waitFor(t, "3 spooled", func() bool { return a.ring.Stats().Spooled == 3 })
	if got := relay.connCount("tcp"); got != 0 {
		t.Errorf("relay saw %d tcp connections, want 0 (a slow relay is not a stalled path)\n%s", got, logs.String())
	}
	if strings.Contains(logs.String(), "quic path stalled") {
		t.Errorf("a slow relay was taken for a stalled path:\n%s", logs.String())
	}
}
