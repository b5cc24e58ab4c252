package cloudclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
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
	Phase  string        // "connect", "tls" or "lost"
	Wait   time.Duration // how long the relay waited
	Err    error
	Reason string // what the operator should suspect
}

func (e *ConnectError) Error() string {
	switch e.Phase {
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
	addr := c.base.Host
	if c.base.Port() == "" {
		addr = net.JoinHostPort(c.base.Hostname(), "443")
	}
	const dropped = "dropped by a firewall?"
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
