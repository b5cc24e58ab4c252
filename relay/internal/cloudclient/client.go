// Package cloudclient speaks the relay side of the relay<->cloud HTTPS API
// (docs/design.md): protobuf bodies, zstd uploads, bearer relay auth, and
// a cloud identity trusted through a CA file or a pinned key fingerprint.
package cloudclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/internal/identity"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

const contentType = "application/x-protobuf"

// maxResponse bounds what the relay reads from the cloud.
const maxResponse = 16 << 20

// Options configure a Client.
type Options struct {
	URL         string // https://cloud.example:8443
	CAFile      string // PEM bundle to trust
	Fingerprint string // pinned SPKI SHA-256, hex; replaces CA validation
	// Timeout bounds a whole call (request sent, answer read) on a
	// connection; a long poll asks the cloud to wait less than this.
	Timeout time.Duration
	// ConnectTimeout bounds a new connection: TCP connect (to the proxy
	// when there is one) and the TLS handshake, and the answer to an HTTP/2
	// keep-alive ping on an idle connection. Default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Proxy is the outbound HTTP CONNECT proxy, http://[user:pass@]host:port
	// (basic credentials from the userinfo). Empty: the standard environment
	// variables (HTTPS_PROXY, NO_PROXY) decide.
	Proxy string
	// Registerer gets gatehouse_relay_cloud_proxy_errors_total; nil: none.
	Registerer prometheus.Registerer
}

// Client calls the cloud. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	hc    *http.Client
	enc   *zstd.Encoder
	proxy func(*http.Request) (*url.URL, error)
	m     *metrics

	timeout, connectTimeout time.Duration

	mu   sync.RWMutex
	auth string
}

// New builds a client; it makes no request.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("cloud url %q: want https://host[:port]", opts.URL)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read cloud ca_file %s: %w", opts.CAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cloud ca_file %s: no certificate", opts.CAFile)
		}
		tc.RootCAs = pool
	}
	if opts.Fingerprint != "" {
		fp, err := identity.NormalizeFingerprint(opts.Fingerprint)
		if err != nil {
			return nil, fmt.Errorf("cloud fingerprint: %w", err)
		}
		tc.InsecureSkipVerify = true // the pin replaces CA validation
		tc.VerifyPeerCertificate = identity.VerifyPinned(fp)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	var fixed *url.URL
	if opts.Proxy != "" {
		if fixed, err = ParseProxyURL(opts.Proxy); err != nil {
			return nil, fmt.Errorf("cloud proxy: %w", err)
		}
	}
	proxy := proxyFunc(fixed)
	tr := &http.Transport{
		Proxy:                  proxy,
		OnProxyConnectResponse: onConnectResponse,
		DialContext:            dialer(opts.ConnectTimeout),
		TLSClientConfig:        tc,
		ForceAttemptHTTP2:      true,
		HTTP2:                  http2Health(opts.ConnectTimeout),
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    opts.ConnectTimeout,
	}
	return &Client{
		base: u, hc: &http.Client{Transport: tr, Timeout: opts.Timeout}, enc: enc,
		proxy: proxy, m: newMetrics(opts.Registerer),
		timeout: opts.Timeout, connectTimeout: opts.ConnectTimeout,
	}, nil
}

// SetCredentials sets the relay identity used on every call but Enroll.
func (c *Client) SetCredentials(relayID, secret string) {
	c.mu.Lock()
	c.auth = "Bearer " + relayID + "." + secret
	c.mu.Unlock()
}

// StatusError is a non-2xx answer from the cloud.
type StatusError struct {
	HTTPStatus int
	Code       cloudv1.Status_Code
	Message    string
	RetryAfter time.Duration // from Retry-After, 0 if absent
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("cloud answered %d %s: %s", e.HTTPStatus, e.Code, e.Message)
}

// Retryable reports whether a call that failed with err may succeed later:
// network errors, timeouts, 429 and 5xx.
func Retryable(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.HTTPStatus == http.StatusTooManyRequests || se.HTTPStatus >= 500
	}
	return err != nil && !errors.Is(err, context.Canceled)
}

// Unreachable reports whether err means the cloud could not be reached or
// could not serve (network error or 5xx), as opposed to a verdict.
func Unreachable(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.HTTPStatus >= 500
	}
	return err != nil && !errors.Is(err, context.Canceled)
}

// RetryAfter returns the cloud's Retry-After hint in err, or 0.
func RetryAfter(err error) time.Duration {
	var se *StatusError
	if errors.As(err, &se) {
		return se.RetryAfter
	}
	return 0
}

// Enroll exchanges an enrollment token for the relay's credentials.
func (c *Client) Enroll(ctx context.Context, req *cloudv1.EnrollRequest) (*cloudv1.EnrollResponse, error) {
	resp := &cloudv1.EnrollResponse{}
	if err := c.call(ctx, "/v1/relay/enroll", false, req, resp, nil); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	return resp, nil
}

// Register registers an agent with the cloud.
func (c *Client) Register(ctx context.Context, req *cloudv1.RegisterAgentRequest) (*cloudv1.RegisterAgentResponse, error) {
	resp := &cloudv1.RegisterAgentResponse{}
	if err := c.call(ctx, "/v1/agents/register", true, req, resp, nil); err != nil {
		return nil, fmt.Errorf("register agent %s: %w", req.GetAgentId(), err)
	}
	return resp, nil
}

// UploadSizes reports the bytes of one upload body.
type UploadSizes struct{ Raw, Compressed int }

// Upload sends batches, zstd-compressed, and returns the cloud's ack.
func (c *Client) Upload(ctx context.Context, req *cloudv1.UploadRequest) (*cloudv1.UploadAck, UploadSizes, error) {
	raw, err := proto.Marshal(req)
	if err != nil {
		return nil, UploadSizes{}, fmt.Errorf("marshal upload: %w", err)
	}
	body := c.enc.EncodeAll(raw, make([]byte, 0, len(raw)/4+64))
	sizes := UploadSizes{Raw: len(raw), Compressed: len(body)}
	ack := &cloudv1.UploadAck{}
	if err := c.do(ctx, "/v1/ingest/upload", true, body, map[string]string{"Content-Encoding": "zstd"}, ack); err != nil {
		return nil, sizes, fmt.Errorf("upload %s: %w", req.GetUploadId(), err)
	}
	return ack, sizes, nil
}

// Poll long-polls the control channel.
func (c *Client) Poll(ctx context.Context, req *cloudv1.ControlPollRequest) (*cloudv1.ControlPollResponse, error) {
	resp := &cloudv1.ControlPollResponse{}
	if err := c.call(ctx, "/v1/control/poll", true, req, resp, nil); err != nil {
		return nil, fmt.Errorf("control poll: %w", err)
	}
	return resp, nil
}

// Results reports the agents' action results to the cloud.
func (c *Client) Results(ctx context.Context, req *cloudv1.ActionResults) (*cloudv1.ActionResultsAck, error) {
	resp := &cloudv1.ActionResultsAck{}
	if err := c.call(ctx, "/v1/control/results", true, req, resp, nil); err != nil {
		return nil, fmt.Errorf("action results: %w", err)
	}
	return resp, nil
}

func (c *Client) call(ctx context.Context, path string, auth bool, req, resp proto.Message, hdr map[string]string) error {
	body, err := proto.Marshal(req)
	if err != nil {
		return fmt.Errorf("marshal request: %w", err)
	}
	return c.do(ctx, path, auth, body, hdr, resp)
}

func (c *Client) do(ctx context.Context, path string, auth bool, body []byte, hdr map[string]string, resp proto.Message) error {
	u := c.base.JoinPath(path)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", contentType)
	for k, v := range hdr {
		hr.Header.Set(k, v)
	}
	if auth {
		c.mu.RLock()
		a := c.auth
		c.mu.RUnlock()
		if a == "" {
			return errors.New("relay not enrolled")
		}
		hr.Header.Set("Authorization", a)
	}
	hr, connectDone := c.watchConnect(hr)
	res, err := c.hc.Do(hr)
	if err != nil {
		if cerr := connectDone(); cerr != nil {
			err = cerr
		}
		if perr := c.proxyFailure(hr, err); perr != err {
			return perr
		}
		return c.classifyConnect(err, c.timeout)
	}
	defer connectDone()
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("read response: %w", c.classifyConnect(err, c.timeout))
	}
	if res.StatusCode/100 != 2 {
		se := &StatusError{HTTPStatus: res.StatusCode, RetryAfter: parseRetryAfter(res.Header.Get("Retry-After"))}
		st := &cloudv1.Status{}
		if proto.Unmarshal(b, st) == nil && (st.Code != 0 || st.Message != "") {
			se.Code, se.Message = st.Code, st.Message
		} else {
			se.Message = strings.TrimSpace(string(b[:min(len(b), 200)]))
		}
		return se
	}
	if err := proto.Unmarshal(b, resp); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// proxyFailure turns a failure at the outbound proxy into a *ProxyError
// and counts it; other errors pass through.
func (c *Client) proxyFailure(hr *http.Request, err error) error {
	host := "(from environment)"
	if pu, perr := c.proxy(hr); perr == nil && pu != nil {
		host = pu.Host
	}
	err = classifyProxy(err, host)
	if reason, ok := IsProxyError(err); ok {
		c.m.proxyErrors.WithLabelValues(reason).Inc()
	}
	return err
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }
