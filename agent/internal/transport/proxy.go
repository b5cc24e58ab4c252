package transport

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// ProxyError is a failure of the HTTP CONNECT proxy; Kind is one of
// ErrProxyAuth, ErrProxyRefused, ErrProxyUnreachable. Its message never
// holds the credentials.
type ProxyError struct {
	Kind error
	Msg  string
}

func (e *ProxyError) Error() string { return e.Msg }
func (e *ProxyError) Unwrap() error { return e.Kind }

// ProxyHost is the proxy's host:port (never its credentials).
func ProxyHost(u *url.URL) string {
	if u == nil {
		return ""
	}
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// proxyFor returns the proxy for a relay address: the configured one, else
// what the environment (HTTPS_PROXY, NO_PROXY...) says; nil = direct.
func (c *Client) proxyFor(addr string) (*url.URL, error) {
	c.mu.Lock()
	override := c.proxyOverride
	c.mu.Unlock()
	if override != nil {
		return override, nil
	}
	if c.opts.Proxy != nil {
		return c.opts.Proxy, nil
	}
	if c.opts.ProxyFromEnv == nil {
		return nil, nil
	}
	u, err := c.opts.ProxyFromEnv(&url.URL{Scheme: "https", Host: addr})
	if err != nil {
		return nil, fmt.Errorf("proxy from environment: %w", err)
	}
	return u, nil
}

// SetProxyOverride makes the agent reach relays through u (a set_proxy
// action) from its next connection on; nil goes back to the configured proxy
// or the environment (clear_proxy).
func (c *Client) SetProxyOverride(u *url.URL) {
	c.mu.Lock()
	c.proxyOverride = u
	c.mu.Unlock()
}

// dialConnect opens a tunnel to target through an HTTP proxy with CONNECT,
// sending basic credentials from the proxy URL.
func dialConnect(ctx context.Context, proxy *url.URL, target string) (net.Conn, error) {
	host := ProxyHost(proxy)
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, &ProxyError{Kind: ErrProxyUnreachable, Msg: fmt.Sprintf("proxy %s unreachable: %v", host, err)}
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: target},
		Host:   target,
		Header: http.Header{},
	}
	if u := proxy.User; u != nil {
		pass, _ := u.Password()
		cred := base64.StdEncoding.EncodeToString([]byte(u.Username() + ":" + pass))
		req.Header.Set("Proxy-Authorization", "Basic "+cred)
	}
	if err := req.Write(c); err != nil {
		c.Close()
		return nil, &ProxyError{Kind: ErrProxyUnreachable, Msg: fmt.Sprintf("proxy %s unreachable: send CONNECT: %v", host, err)}
	}
	br := bufio.NewReader(c)
	if err := readConnectResponse(br, req, host, target); err != nil {
		c.Close()
		return nil, err
	}
	if !stop() {
		c.Close()
		return nil, ctx.Err()
	}
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: c, r: br}, nil
	}
	return c, nil
}

// readConnectResponse reads the proxy's answer to CONNECT with net/http's
// parser and turns anything but 200 into a ProxyError.
func readConnectResponse(br *bufio.Reader, req *http.Request, host, target string) error {
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return &ProxyError{Kind: ErrProxyRefused, Msg: fmt.Sprintf("proxy refused CONNECT to %s: bad answer from %s: %v", target, host, err)}
	}
	// A non-200 answer's body is not the tunnel: read a little for the log.
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusProxyAuthRequired, resp.StatusCode == http.StatusUnauthorized:
		// 407 is the standard answer; some proxies (tinyproxy 1.11) send 401.
		return &ProxyError{Kind: ErrProxyAuth, Msg: fmt.Sprintf("proxy authentication failed (%d): check the proxy credentials", resp.StatusCode)}
	default:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return &ProxyError{Kind: ErrProxyRefused, Msg: fmt.Sprintf("proxy refused CONNECT to %s: %s %s", target, resp.Proto, resp.Status)}
	}
}

// bufferedConn reads first what the CONNECT reader buffered.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }
