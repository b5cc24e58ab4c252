package transport

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/proto/framing"
)

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLadder(t *testing.T) {
	tests := []struct {
		name    string
		net     relayNet
		mode    string
		tcpWait time.Duration
		want    string
	}{
		// QUIC gets a long head start so a slow machine cannot make TCP win.
		{"both open: quic", relayNet{}, ModeAuto, 10 * time.Second, TransportQUIC},
		{"udp silently dropped: tcp", relayNet{udpBlackhole: true}, ModeAuto, 300 * time.Millisecond, TransportTCP},
		{"forced tcp", relayNet{}, ModeTCP, 0, TransportTCP},
		{"forced quic", relayNet{}, ModeQUIC, 0, TransportQUIC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			relay := newFakeRelayOn(t, tt.net)
			a := newAgentWith(t, relay, "", func(o *Options) { o.Mode = tt.mode; o.TCPDelay = tt.tcpWait })
			a.add(t, bulk, 3)
			a.add(t, sec, 1)
			a.run(t)
			waitFor(t, "all spooled", func() bool { return a.ring.Stats().Spooled == 4 })
			if st := a.client.Status(); st.State != StateConnected || st.Transport != tt.want || st.Proxy != "" {
				t.Fatalf("status: got %+v, want connected over %s without proxy", st, tt.want)
			}
			if got := relay.connCount(map[string]string{TransportQUIC: "quic", TransportTCP: "tcp"}[tt.want]); got < 1 {
				t.Fatalf("relay saw %d %s connections, want >= 1", got, tt.want)
			}
			b, err := os.ReadFile(filepath.Join(a.dir, netMemFile))
			if tt.mode == ModeAuto {
				if err != nil || !strings.Contains(string(b), `"transport": "`+tt.want+`"`) {
					t.Fatalf("transport.json: got %q, %v, want %s remembered", b, err, tt.want)
				}
			}
		})
	}
}

// TestTCPRememberedThenQUICReprobe: on a network where TCP worked last, the
// agent starts on TCP, re-probes QUIC and moves to it.
func TestTCPRememberedThenQUICReprobe(t *testing.T) {
	relay := newFakeRelay(t)
	a := newAgentWith(t, relay, "", func(o *Options) {
		o.TCPDelay = 10 * time.Second // QUIC cannot win the first race
		o.QUICReprobe = 20 * time.Millisecond
	})
	if err := a.client.mem.set(networkKey(relay.addr), TransportTCP, time.Now()); err != nil {
		t.Fatal(err)
	}
	a.add(t, bulk, 2)
	a.run(t)
	waitFor(t, "moved to quic", func() bool {
		return a.client.Status().Transport == TransportQUIC && relay.connCount("tcp") >= 1
	})
	waitFor(t, "all spooled", func() bool { return a.ring.Stats().Spooled == 2 })
	if r, _ := a.client.mem.get(networkKey(relay.addr)); r.Transport != TransportQUIC {
		t.Fatalf("remembered: got %q, want quic", r.Transport)
	}
}

// TestPinMismatchOverTCP: a TLS-intercepting middlebox presenting another
// key on the relay's TCP port is named as such; data is kept.
func TestPinMismatchOverTCP(t *testing.T) {
	relay := newFakeRelayOn(t, relayNet{udpBlackhole: true, noTCP: true})
	other, err := identity.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := other.Certificate("mitm", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", relay.addr, &tls.Config{
		Certificates: []tls.Certificate{cert}, NextProtos: []string{framing.ALPN}, ClientAuth: tls.RequestClientCert,
	})
	if err != nil {
		t.Skipf("tcp port %s taken: %v", relay.addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	logs := &syncBuffer{}
	a := newAgentWith(t, relay, relay.id.Fingerprint(), func(o *Options) {
		o.DialTimeout = time.Second
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	a.add(t, bulk, 2)
	a.run(t)
	want := "relay identity does not match the pinned fingerprint: got sha256:" + other.Fingerprint() + ", a TLS-inspecting proxy or the wrong relay"
	waitFor(t, "pin mismatch in status", func() bool { return strings.Contains(a.client.Status().LastError, want) })
	waitFor(t, "pin mismatch in log", func() bool { return strings.Contains(logs.String(), "a TLS-inspecting proxy") })
	if got := a.ring.Stats().Batches; got != 2 {
		t.Fatalf("batches: got %d, want 2 kept", got)
	}
}

// startTinyproxy runs a real tinyproxy on loopback with basic auth
// user:pass that allows CONNECT to port only. It skips without tinyproxy.
func startTinyproxy(t testing.TB, port string) string {
	t.Helper()
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		t.Skip("tinyproxy not installed (Debian package tinyproxy): skipping the proxy test")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, pport, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	conf := filepath.Join(dir, "tinyproxy.conf")
	body := fmt.Sprintf("Port %s\nListen 127.0.0.1\nTimeout 60\nBasicAuth user pass\nConnectPort %s\nAllow 127.0.0.1\nLogLevel Connect\nMaxClients 100\n", pport, port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd := exec.Command(bin, "-d", "-c", conf)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		select {
		case <-done:
			t.Fatalf("tinyproxy exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tinyproxy not listening on %s: %s", addr, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProxy(t *testing.T) {
	closedPort := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}()
	tests := []struct {
		name      string
		userinfo  string
		wrongPort bool   // tinyproxy allows CONNECT to another port only
		proxyAddr string // instead of tinyproxy
		wantErr   string
	}{
		{name: "good credentials", userinfo: "user:pass"},
		// tinyproxy 1.11 answers 401 where the standard says 407.
		{name: "wrong password", userinfo: "user:s3cret-wrong", wantErr: "): check the proxy credentials"},
		{name: "connect refused", userinfo: "user:pass", wrongPort: true, wantErr: "proxy refused CONNECT to "},
		{name: "proxy down", userinfo: "user:s3cret-wrong", proxyAddr: closedPort, wantErr: "proxy " + closedPort + " unreachable: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			relay := newFakeRelayOn(t, relayNet{udpBlackhole: true})
			_, port, _ := net.SplitHostPort(relay.addr)
			proxyAddr := tt.proxyAddr
			if proxyAddr == "" {
				allow := port
				if tt.wrongPort {
					allow = "1"
				}
				proxyAddr = startTinyproxy(t, allow)
			}
			pu, err := url.Parse("http://" + tt.userinfo + "@" + proxyAddr)
			if err != nil {
				t.Fatal(err)
			}
			logs := &syncBuffer{}
			a := newAgentWith(t, relay, "", func(o *Options) {
				o.Proxy = pu
				o.DialTimeout = time.Second
				o.Logger = slog.New(slog.NewTextHandler(logs, nil))
			})
			a.add(t, bulk, 2)
			a.run(t)
			if tt.wantErr == "" {
				waitFor(t, "spooled through the proxy", func() bool { return a.ring.Stats().Spooled == 2 })
				st := a.client.Status()
				if st.Transport != TransportTCPProxy || st.Proxy != proxyAddr {
					t.Fatalf("status: got transport %q proxy %q, want tcp+proxy via %s", st.Transport, st.Proxy, proxyAddr)
				}
				return
			}
			waitFor(t, "error in status", func() bool {
				st := a.client.Status()
				return st.State == StateError && strings.Contains(st.LastError, tt.wantErr)
			})
			waitFor(t, "error in log", func() bool { return strings.Contains(logs.String(), tt.wantErr) })
			if st := a.client.Status(); st.Proxy != proxyAddr {
				t.Fatalf("status proxy: got %q, want %q", st.Proxy, proxyAddr)
			}
			if strings.Contains(logs.String(), "s3cret") || strings.Contains(a.client.Status().LastError, "s3cret") {
				t.Fatal("the proxy password reached the log or the status")
			}
			if got := a.ring.Stats().Batches; got != 2 {
				t.Fatalf("batches: got %d, want 2 kept", got)
			}
		})
	}
}
