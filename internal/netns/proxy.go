package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ProxyOptions configure a tinyproxy instance.
type ProxyOptions struct {
	Netns        string // namespace to run in; "" = the test's own
	Listen       string // IP to listen on
	Port         int    // default 8888
	User, Pass   string // BasicAuth; both empty: no authentication
	ConnectPorts []int  // ports CONNECT may reach; default 443
}

// Proxy is a real HTTP CONNECT proxy (Debian's tinyproxy) with a generated
// configuration, run in the foreground and stopped in t.Cleanup.
type Proxy struct {
	opts    ProxyOptions
	Conf    string
	LogPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartProxy writes a tinyproxy config under t.TempDir() and starts it. It
// skips the test when tinyproxy is not installed.
func StartProxy(t testing.TB, o ProxyOptions) *Proxy {
	t.Helper()
	if _, err := exec.LookPath("tinyproxy"); err != nil {
		t.Skip("needs tinyproxy (Debian package tinyproxy; `make deps` installs it)")
	}
	if o.Port == 0 {
		o.Port = 8888
	}
	if len(o.ConnectPorts) == 0 {
		o.ConnectPorts = []int{443}
	}
	dir := t.TempDir()
	p := &Proxy{opts: o, Conf: filepath.Join(dir, "tinyproxy.conf"), LogPath: filepath.Join(dir, "tinyproxy.log")}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Port %d\nListen %s\nTimeout 600\nMaxClients 200\nLogLevel Connect\nDisableViaHeader Yes\n", o.Port, o.Listen)
	if o.User != "" || o.Pass != "" {
		fmt.Fprintf(&b, "BasicAuth %s %s\n", o.User, o.Pass)
	}
	for _, cp := range o.ConnectPorts {
		fmt.Fprintf(&b, "ConnectPort %d\n", cp)
	}
	if err := os.WriteFile(p.Conf, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return net.JoinHostPort(p.opts.Listen, fmt.Sprint(p.opts.Port)) }

// AddrPort is the proxy's address, for firewall rules.
func (p *Proxy) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(p.opts.Listen), uint16(p.opts.Port))
}

// URL is http://user:pass@host:port with the proxy's own credentials.
func (p *Proxy) URL() string { return p.URLWith(p.opts.User, p.opts.Pass) }

// URLWith is the proxy's URL with other credentials (wrong ones, say).
func (p *Proxy) URLWith(user, pass string) string {
	u := url.URL{Scheme: "http", Host: p.Addr()}
	if user != "" || pass != "" {
		u.User = url.UserPassword(user, pass)
	}
	return u.String()
}

// Start runs tinyproxy (again, after Stop) and waits until it accepts
// connections.
func (p *Proxy) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return errors.New("tinyproxy already running")
		}
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := []string{"-d", "-c", p.Conf}
	cmd := exec.Command("tinyproxy", args...)
	if p.opts.Netns != "" {
		cmd = Command(p.opts.Netns, "tinyproxy", args...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start tinyproxy: %w", err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := p.dial()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("tinyproxy exited at start: %s", p.tail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tinyproxy not listening on %s: %v", p.Addr(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *Proxy) dial() (net.Conn, error) {
	if p.opts.Netns != "" {
		return DialIn(context.Background(), p.opts.Netns, "tcp", p.Addr())
	}
	return net.DialTimeout("tcp", p.Addr(), time.Second)
}

// Stop kills tinyproxy ("proxy down") and waits until it is gone.
func (p *Proxy) Stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Running reports whether tinyproxy runs.
func (p *Proxy) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// LogContains reports whether tinyproxy's log holds s (with LogLevel
// Connect it logs every CONNECT request line).
func (p *Proxy) LogContains(s string) bool {
	b, _ := os.ReadFile(p.LogPath)
	return bytes.Contains(b, []byte(s))
}

func (p *Proxy) tail() string {
	b, _ := os.ReadFile(p.LogPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
