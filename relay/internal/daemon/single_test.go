package daemon

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"

	"github.com/gatehouse/gatehouse/cluster"
	"github.com/gatehouse/gatehouse/internal/action"
	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/internal/testkit"
	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/config"
)

// A relay started with no cluster commands is a cluster of one: the cloud's
// DNS overrides, actions and isolation reach its Raft state, and it serves
// them from there, also after a restart while the cloud is down (nothing
// comes from the last poll any more).
func TestSingleRelayServesFromReplicatedState(t *testing.T) {
	agentID := testkit.Identity(t)
	down := &atomic.Bool{}
	poll := &atomic.Pointer[cloudv1.ControlPollResponse]{}
	poll.Store(&cloudv1.ControlPollResponse{
		Version: 2,
		DnsOverrides: []*cloudv1.DnsOverride{{
			Name: "api.cloud.example.", Type: cloudv1.DnsType_DNS_TYPE_A, Values: []string{"198.51.100.7"}, TtlSeconds: 30,
		}},
		AllowList: &cloudv1.AllowList{Cidrs: []string{"192.0.2.0/24"}},
		Isolation: []*cloudv1.AgentIsolation{{AgentId: agentID.ID(), Isolated: true}},
		Actions: []*cloudv1.PendingAction{{
			ActionId: "act-1", AgentId: agentID.ID(), Action: action.New(agentv1.ActionType_ACTION_TYPE_HEARTBEAT_NOW), CreatedUnixMs: 1,
		}},
	})
	cloud := cloudStubWith(t, stubOptions{down: down, poll: poll})
	cfg := relayConfig(t, cloud, func(c *config.Config) { c.Name = "relay-alone"; withDNS(c) })
	if cluster.Initialized(cfg.Cluster.DataDir) {
		t.Fatal("cluster credentials before the first start")
	}

	d, stop := startDaemon(t, cfg)
	if !cluster.Solo(cfg.Cluster.DataDir) {
		t.Fatal("a relay started alone is not a cluster of one")
	}
	waitFor(t, "the poll's state in the Raft state", func() bool {
		st := d.node.Store()
		return len(st.DNSOverrides()) == 1 && len(st.PendingCommands(agentID.ID())) == 1 && st.Isolation(agentID.ID()).GetIsolated()
	})
	waitFor(t, "the override answered", func() bool { return lookupA(d, "api.cloud.example.") == "198.51.100.7" })
	if st := status(t, d); st.Cluster == nil || st.Cluster.Members != 1 || st.Cluster.LeaderID != cfg.Cluster.NodeID {
		t.Fatalf("status: got cluster %+v, want a cluster of one led by %s", st.Cluster, cfg.Cluster.NodeID)
	}
	cmds := connectAgent(t, d, agentID, "good-key")
	wantCommands(t, cmds, "isolate", "act-1")
	stop()

	// The cloud is down now: what the relay serves comes from its Raft log.
	down.Store(true)
	d, stop = startDaemon(t, cfg)
	defer stop()
	waitFor(t, "the override answered after a restart with the cloud down", func() bool {
		return lookupA(d, "api.cloud.example.") == "198.51.100.7"
	})
	wantCommands(t, connectAgent(t, d, agentID, ""), "isolate", "act-1")
}

func startDaemon(t *testing.T, cfg config.Config) (*Daemon, func()) {
	t.Helper()
	d, err := New(cfg, testkit.Logger(t).With("relay", filepath.Base(cfg.DataDir)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	stopped := false
	return d, func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
}

func lookupA(d *Daemon, name string) string {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, d.dns.Addr().String())
	if err != nil || len(r.Answer) == 0 {
		return ""
	}
	if a, ok := r.Answer[0].(*dns.A); ok {
		return a.A.String()
	}
	return ""
}

// connectAgent says hello as agent id and returns the commands the relay
// sends it in its first heartbeat reply.
func connectAgent(t *testing.T, d *Daemon, id *identity.Identity, key string) []*agentv1.Command {
	t.Helper()
	conn, ctrl, r, f := helloAgent(t, d, id, key)
	defer conn.CloseWithError(0, "")
	if f.GetHelloReply() == nil {
		t.Fatalf("hello: got %v, want a reply", f)
	}
	if err := framing.Write(ctrl, &agentv1.Frame{Body: &agentv1.Frame_Heartbeat{Heartbeat: &agentv1.Heartbeat{}}}); err != nil {
		t.Fatal(err)
	}
	for {
		f := &agentv1.Frame{}
		if err := r.Next(f); err != nil {
			t.Fatalf("waiting for a heartbeat reply: %v", err)
		}
		if hb := f.GetHeartbeatReply(); hb != nil {
			return hb.GetCommands()
		}
	}
}

func wantCommands(t *testing.T, cmds []*agentv1.Command, wantTypeOrID ...string) {
	t.Helper()
	var got []string
	for _, c := range cmds {
		got = append(got, action.Name(c.GetAction().GetType()), c.GetId())
	}
	for _, w := range wantTypeOrID {
		if !slices.Contains(got, w) {
			t.Fatalf("commands: got %v, want %s among them", got, w)
		}
	}
}

// helloAgent dials the relay's QUIC port as agent id, sends a hello with
// key and reads the first frame of the answer.
func helloAgent(t *testing.T, d *Daemon, id *identity.Identity, key string) (*quic.Conn, *quic.Stream, *framing.Reader, *agentv1.Frame) {
	t.Helper()
	cert, err := id.Certificate("agent", nil)
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{framing.ALPN}, InsecureSkipVerify: true,
		VerifyPeerCertificate: identity.VerifyPinned(d.Fingerprint())}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, d.AgentAddr(), tc, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := conn.OpenStreamSync(ctx)
	if err != nil {
		conn.CloseWithError(0, "")
		t.Fatal(err)
	}
	if err := framing.Write(ctrl, &agentv1.Frame{Body: &agentv1.Frame_Hello{Hello: &agentv1.Hello{Hostname: "h", RegistrationKey: key}}}); err != nil {
		conn.CloseWithError(0, "")
		t.Fatal(err)
	}
	r := framing.NewReader(ctrl, 0)
	f := &agentv1.Frame{}
	if err := r.Next(f); err != nil {
		conn.CloseWithError(0, "")
		t.Fatalf("hello: %v", err)
	}
	return conn, ctrl, r, f
}

// A relay that cannot bind its DNS port fails to start and leaves nothing
// behind: its agent and admin ports and its data directory are free again.
func TestNewClosesWhatItOpenedOnFailure(t *testing.T) {
	cloud := cloudStub(t)
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := relayConfig(t, cloud, func(c *config.Config) {
		c.Listen, c.AdminListen = freeAddr(t), freeAddr(t)
		withDNS(c)
		c.DNS.Listen = busy.LocalAddr().String()
	})
	if _, err := New(cfg, testkit.Logger(t)); err == nil {
		t.Fatal("New with the DNS port taken: got no error")
	}
	for _, l := range []struct{ network, addr string }{{"udp", cfg.Listen}, {"tcp", cfg.Listen}, {"tcp", cfg.AdminListen}} {
		var c io.Closer
		var err error
		if l.network == "udp" {
			c, err = net.ListenPacket("udp", l.addr)
		} else {
			c, err = net.Listen("tcp", l.addr)
		}
		if err != nil {
			t.Fatalf("after a failed start, %s %s is still taken: %v", l.network, l.addr, err)
		}
		c.Close()
	}
	cfg.DNS.Listen = "127.0.0.1:0"
	d, err := New(cfg, testkit.Logger(t))
	if err != nil {
		t.Fatalf("second start after the port is fixed: %v", err)
	}
	d.Close()
}

// freeAddr is a loopback address whose port is free for TCP and UDP now.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if u, err := net.ListenPacket("udp", addr); err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return ""
}
