package netns

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// serveTCP accepts on addr inside h and answers every connection "hi".
func serveTCP(t *testing.T, h *Host, port int) {
	t.Helper()
	l, err := ListenIn(h.Netns, "tcp", h.Addr(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hi\n"))
			c.Close()
		}
	}()
}

func dialOK(ctx context.Context, from *Host, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := from.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "hi\n" {
		return fmt.Errorf("got %q, want hi", line)
	}
	return nil
}

// connect asks the proxy for a tunnel to target and returns its status code.
func connect(ctx context.Context, from *Host, proxy, target, user, pass string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := from.DialContext(ctx, "tcp", proxy)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	req, _ := http.NewRequest(http.MethodConnect, "http://"+target, nil)
	req.Host = target
	if user != "" {
		req.SetBasicAuth(user, pass)
		req.Header.Set("Proxy-Authorization", req.Header.Get("Authorization"))
		req.Header.Del("Authorization")
	}
	if err := req.Write(c); err != nil {
		return 0, err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return 0, err
	}
	return res.StatusCode, nil
}

func TestSitePolicies(t *testing.T) {
	s := NewSite(t, SiteOptions{})
	ctx := context.Background()
	agent, relay, cloud := s.Agent(), s.Relay(), s.Cloud
	serveTCP(t, relay, 443)
	serveTCP(t, cloud, 443)
	udp, err := ListenPacketIn(relay.Netns, "udp", relay.Addr(443))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()

	// sendUDP sends a datagram from the agent to the relay and reports
	// whether it arrived.
	sendUDP := func() bool {
		c, err := agent.DialContext(ctx, "udp", relay.Addr(443))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("ping"))
		udp.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 16)
		n, _, err := udp.ReadFrom(buf)
		return err == nil && string(buf[:n]) == "ping"
	}

	t.Run("open", func(t *testing.T) {
		s.SetPolicy(Open)
		if err := dialOK(ctx, agent, relay.Addr(443)); err != nil {
			t.Errorf("agent -> relay tcp: got %v, want a connection", err)
		}
		if err := dialOK(ctx, relay, cloud.Addr(443)); err != nil {
			t.Errorf("relay -> cloud tcp: got %v, want a connection", err)
		}
		if !sendUDP() {
			t.Errorf("agent -> relay udp: got nothing, want the datagram")
		}
		if err := dialOK(ctx, agent, cloud.Addr(443)); err == nil {
			t.Errorf("agent -> cloud: got a connection, want it dropped")
		}
	})
	t.Run("agent udp dropped", func(t *testing.T) {
		s.SetPolicy(AgentUDPDropped)
		before, _ := s.Dropped("agent-udp")
		if sendUDP() {
			t.Errorf("agent -> relay udp: got the datagram, want it dropped")
		}
		if after, err := s.Dropped("agent-udp"); err != nil || after <= before {
			t.Errorf("agent-udp drop counter: got %d (was %d, err %v), want it to grow", after, before, err)
		}
		if err := dialOK(ctx, agent, relay.Addr(443)); err != nil {
			t.Errorf("agent -> relay tcp: got %v, want a connection", err)
		}
	})
	t.Run("proxy only", func(t *testing.T) {
		s.SetPolicy(ProxyOnly)
		if err := dialOK(ctx, agent, relay.Addr(443)); err == nil {
			t.Errorf("agent -> relay direct: got a connection, want it dropped")
		}
		if err := dialOK(ctx, relay, cloud.Addr(443)); err == nil {
			t.Errorf("relay -> cloud direct: got a connection, want it dropped")
		}
		for _, tt := range []struct {
			name       string
			from       *Host
			target     string
			user, pass string
			want       int
		}{
			{"agent to relay", agent, relay.Addr(443), ProxyUser, ProxyPass, 200},
			{"relay to cloud", relay, cloud.Addr(443), ProxyUser, ProxyPass, 200},
			// tinyproxy 1.11 answers 401 to wrong credentials (407 to none).
			{"wrong password", relay, cloud.Addr(443), ProxyUser, "nope", 401},
			{"no credentials", relay, cloud.Addr(443), "", "", 407},
		} {
			got, err := connect(ctx, tt.from, s.Proxy.Addr(), tt.target, tt.user, tt.pass)
			if err != nil || got != tt.want {
				t.Errorf("%s through the proxy: got %d (%v), want %d", tt.name, got, err, tt.want)
			}
		}
	})
	t.Run("proxy down", func(t *testing.T) {
		s.Proxy.Stop()
		if _, err := connect(ctx, relay, s.Proxy.Addr(), cloud.Addr(443), ProxyUser, ProxyPass); err == nil {
			t.Errorf("proxy stopped: got a tunnel, want an error")
		}
		if err := s.Proxy.Start(); err != nil {
			t.Fatal(err)
		}
		if got, err := connect(ctx, relay, s.Proxy.Addr(), cloud.Addr(443), ProxyUser, ProxyPass); err != nil || got != 200 {
			t.Errorf("proxy restarted: got %d (%v), want 200", got, err)
		}
	})
	if t.Failed() {
		t.Logf("firewall:\n%s", s.NftList())
	}
}

// A topology leaves no namespace and no process behind, even when its test
// fails.
func TestTeardownLeavesNothing(t *testing.T) {
	RequireRoot(t)
	var id string
	t.Run("site", func(t *testing.T) {
		s := NewSite(t, SiteOptions{Relays: 2})
		id = s.ID()
		if got := len(s.Hosts()); got != 5 {
			t.Errorf("got %d hosts, want 5 (agent, 2 relays, proxy, cloud)", got)
		}
		cmd := Command(s.Relays[1].Netns, "sleep", "300")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go cmd.Wait()
	})
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), id) {
		t.Errorf("got namespaces %q after cleanup, want none with %s", out, id)
	}
}
