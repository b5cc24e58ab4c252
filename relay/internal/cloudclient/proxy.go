package cloudclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"
)

// Proxy failure reasons, the `reason` label of
// gatehouse_relay_cloud_proxy_errors_total.
const (
	ProxyAuthFailed  = "auth"        // the proxy answered 407 (or 401)
	ProxyRefused     = "refused"     // any other non-200 answer to CONNECT
	ProxyUnreachable = "unreachable" // the proxy itself could not be reached
)

// ProxyError is a failure of the outbound proxy between the relay and the
// cloud, as opposed to a failure of the cloud. Its message never holds the
// proxy's credentials.
type ProxyError struct {
	Reason     string // ProxyAuthFailed, ProxyRefused or ProxyUnreachable
	Proxy      string // host:port of the proxy
	Target     string // host:port asked of CONNECT
	StatusCode int    // the proxy's answer to CONNECT, for auth and refused
	StatusLine string
	Err        error // the dial error, for unreachable
}

func (e *ProxyError) Error() string {
	switch e.Reason {
	case ProxyAuthFailed:
		return fmt.Sprintf("cloud proxy authentication failed (%d): check cloud.proxy credentials (proxy %s)", e.StatusCode, e.Proxy)
	case ProxyRefused:
		return fmt.Sprintf("cloud proxy %s refused CONNECT to %s: %s", e.Proxy, e.Target, e.StatusLine)
	default:
		return fmt.Sprintf("cloud proxy %s unreachable: %v", e.Proxy, e.Err)
	}
}

func (e *ProxyError) Unwrap() error { return e.Err }

// ParseProxyURL checks a cloud.proxy value: http or https scheme, a host
// and a port. Errors never repeat the password.
func ParseProxyURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the input, password included.
		return nil, errors.New("not a URL (want http://[user:pass@]host:port)")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%s: want scheme http or https", u.Redacted())
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("%s: want http://[user:pass@]host:port", u.Redacted())
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return nil, fmt.Errorf("%s: want no path or query", u.Redacted())
	}
	return u, nil
}

// proxyFunc is the Transport's Proxy: the configured URL, or the standard
// environment variables (HTTPS_PROXY, NO_PROXY) when none is configured.
func proxyFunc(fixed *url.URL) func(*http.Request) (*url.URL, error) {
	if fixed == nil {
		return http.ProxyFromEnvironment
	}
	return http.ProxyURL(fixed)
}

// onConnectResponse turns a proxy's refusal of CONNECT into a ProxyError.
func onConnectResponse(_ context.Context, proxy *url.URL, req *http.Request, res *http.Response) error {
	if res.StatusCode == http.StatusOK {
		return nil
	}
	e := &ProxyError{Reason: ProxyRefused, Proxy: proxy.Host, Target: req.Host, StatusCode: res.StatusCode, StatusLine: res.Status}
	// 407 is the standard answer; some proxies (tinyproxy 1.11) answer
	// wrong credentials with 401 and only missing ones with 407.
	if res.StatusCode == http.StatusProxyAuthRequired || res.StatusCode == http.StatusUnauthorized {
		e.Reason = ProxyAuthFailed
	}
	return e
}

// classifyProxy returns err as a *ProxyError when the proxy failed: its
// refusal (already typed) or a failed dial to the proxy ("proxyconnect").
func classifyProxy(err error, proxy string) error {
	var pe *ProxyError
	if errors.As(err, &pe) {
		return pe
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "proxyconnect" {
		return &ProxyError{Reason: ProxyUnreachable, Proxy: proxy, Err: op.Err}
	}
	return err
}

// IsProxyError reports whether err is a failure of the outbound proxy, and
// which one.
func IsProxyError(err error) (reason string, ok bool) {
	var pe *ProxyError
	if errors.As(err, &pe) {
		return pe.Reason, true
	}
	return "", false
}

type metrics struct {
	proxyErrors *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		proxyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_relay_cloud_proxy_errors_total",
			Help: "Calls to the cloud that failed at the outbound proxy, by reason (auth, refused, unreachable).",
		}, []string{"reason"}),
	}
	for _, r := range []string{ProxyAuthFailed, ProxyRefused, ProxyUnreachable} {
		m.proxyErrors.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.proxyErrors)
	}
	return m
}
