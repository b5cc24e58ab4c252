package cloudclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"
)

// DefaultConnectTimeout bounds a new connection to the cloud (TCP connect,
// through the proxy when there is one, and the TLS handshake). A firewall
// that drops packets answers nothing: without this bound a call would wait
// for the whole request timeout and fail with a generic message.
const DefaultConnectTimeout = 5 * time.Second

// ConnectError is a failure to reach the cloud at all, or the loss of an
// established connection, as opposed to an answer from the cloud.
type ConnectError struct {
	Addr   string        // host:port of the cloud
	Proxy  string        // host:port of the proxy, if any
	Phase  string        // "connect", "proxy", "tls", "lost" or "stalled"
	Wait   time.Duration // how long the relay waited
	Err    error
	Reason string // what the operator should suspect
}

func (e *ConnectError) Error() string {
	switch e.Phase {
	case "proxy":
		return fmt.Sprintf("connect to cloud %s through proxy %s: no answer to CONNECT in %s (%s)", e.Addr, e.Proxy, e.Wait, e.Reason)
	case "tls":
		return fmt.Sprintf("connect to cloud %s: TLS handshake not finished in %s (%s)", e.Addr, e.Wait, e.Reason)
	case "lost":
		return fmt.Sprintf("connection to cloud %s lost: no answer to keep-alive ping in %s (%s)", e.Addr, e.Wait, e.Reason)
	case "stalled":
		return fmt.Sprintf("cloud %s did not answer within %s (%s)", e.Addr, e.Wait, e.Reason)
	default:
		if e.Reason != "" {
			return fmt.Sprintf("connect to cloud %s: no answer in %s (%s)", e.Addr, e.Wait, e.Reason)
		}
		return fmt.Sprintf("connect to cloud %s: %v", e.Addr, e.Err)
	}
}

func (e *ConnectError) Unwrap() error { return e.Err }

// classifyConnect turns the transport's errors about the path to the cloud
// into a *ConnectError that says what failed; other errors pass through.
func (c *Client) classifyConnect(err error, timeout time.Duration) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	addr := c.cloudAddr()
	var op *net.OpError
	var ne net.Error
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		if op.Timeout() {
			return &ConnectError{Addr: addr, Phase: "connect", Wait: c.connectTimeout, Err: err, Reason: dropped}
		}
		return &ConnectError{Addr: addr, Phase: "connect", Err: err}
	case strings.Contains(err.Error(), "TLS handshake timeout"):
		return &ConnectError{Addr: addr, Phase: "tls", Wait: c.connectTimeout, Err: err, Reason: "dropped by a firewall, or not the cloud?"}
	case strings.Contains(err.Error(), "http2: client connection lost"):
		return &ConnectError{Addr: addr, Phase: "lost", Wait: c.connectTimeout, Err: err, Reason: dropped}
	case errors.As(err, &ne) && ne.Timeout():
		return &ConnectError{Addr: addr, Phase: "stalled", Wait: timeout, Err: err, Reason: "connection stalled: " + dropped}
	}
	return err
}

const dropped = "dropped by a firewall?"

// cloudAddr is the cloud's host:port.
func (c *Client) cloudAddr() string {
	if c.base.Port() == "" {
		return net.JoinHostPort(c.base.Hostname(), "443")
	}
	return c.base.Host
}

// watchConnect bounds getting a connection for hr (TCP connect, the proxy's
// CONNECT, the TLS handshake; nothing when an open connection is reused) by
// the connect timeout as a whole, and records how far it got, so that a
// silent drop anywhere on the way is reported at once and by its stage.
// The transport's own bounds cover only some stages: it waits up to a
// minute for a proxy's answer to CONNECT. Call the returned func when the
// request is done; its error, when not nil, replaces the request's.
func (c *Client) watchConnect(hr *http.Request) (*http.Request, func() error) {
	ctx, cancel := context.WithCancelCause(hr.Context())
	proxy := ""
	if pu, err := c.proxy(hr); err == nil && pu != nil {
		proxy = pu.Host
	}
	var mu sync.Mutex
	stage := "dial"
	var timer *time.Timer
	expire := func() {
		mu.Lock()
		st := stage
		mu.Unlock()
		var err error
		switch {
		case st == "dial" && proxy != "":
			err = &ProxyError{Reason: ProxyUnreachable, Proxy: proxy, Err: fmt.Errorf("no answer in %s (%s)", c.connectTimeout, dropped)}
		case st == "dial":
			err = &ConnectError{Addr: c.cloudAddr(), Phase: "connect", Wait: c.connectTimeout, Reason: dropped}
		case st == "connected" && proxy != "":
			err = &ConnectError{Addr: c.cloudAddr(), Proxy: proxy, Phase: "proxy", Wait: c.connectTimeout, Reason: "the proxy cannot reach the cloud: " + dropped}
		default:
			err = &ConnectError{Addr: c.cloudAddr(), Phase: "tls", Wait: c.connectTimeout, Reason: "dropped by a firewall, or not the cloud?"}
		}
		cancel(err)
	}
	set := func(s string) { mu.Lock(); stage = s; mu.Unlock() }
	trace := &httptrace.ClientTrace{
		GetConn: func(string) {
			mu.Lock()
			defer mu.Unlock()
			stage = "dial"
			if timer != nil {
				timer.Stop()
			}
			timer = time.AfterFunc(c.connectTimeout, expire)
		},
		ConnectDone: func(_, _ string, err error) {
			if err == nil {
				set("connected")
			}
		},
		TLSHandshakeStart: func() { set("tls") },
		GotConn: func(httptrace.GotConnInfo) {
			mu.Lock()
			defer mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
		},
	}
	done := func() error {
		mu.Lock()
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cause := context.Cause(ctx)
		cancel(nil)
		var ce *ConnectError
		var pe *ProxyError
		if errors.As(cause, &ce) || errors.As(cause, &pe) {
			return cause
		}
		return nil
	}
	return hr.WithContext(httptrace.WithClientTrace(ctx, trace)), done
}

// dialer bounds every new TCP connection the transport makes, to the cloud
// or to the proxy.
func dialer(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second}
	return d.DialContext
}

// http2Health makes an idle HTTP/2 connection prove it is alive: when no
// frame arrived for timeout (a long poll waiting, an upload stuck), send a
// ping; no answer within timeout closes the connection and fails its
// requests at once, instead of at their own deadline.
func http2Health(timeout time.Duration) *http.HTTP2Config {
	return &http.HTTP2Config{SendPingTimeout: timeout, PingTimeout: timeout}
}
