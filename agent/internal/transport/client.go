// Package transport carries the ring's batches to a relay over QUIC and
// brings back the relay's receipts, as docs/design.md ("Agent <-> relay")
// specifies: a control stream (Hello, Heartbeat, Delivered, ReceiptAck,
// Error) and one stream per priority lane (EventBatch out, BatchAck back).
package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/agent/internal/ring"
	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	"github.com/quic-go/quic-go"
)

// Connection states reported in Status.
const (
	StateConnecting = "connecting"
	StateConnected  = "connected"
	StateError      = "error"
)

// Options configures a Client.
type Options struct {
	Relays            []string // host:port, tried in order
	Fingerprint       string   // pinned relay key; "" = trust on first use
	RegistrationKey   string
	DataDir           string
	Hostname          string
	Version           string
	ContentVersion    string
	HeartbeatInterval time.Duration
	RedeliverAfter    time.Duration
	Identity          *identity.Identity
	Ring              *ring.Ring
	Stats             func() *agentv1.HostStats // may be nil
	Now               func() time.Time
	Logger            *slog.Logger
	OnChange          func() // called (without locks) when Status changes

	MinBackoff      time.Duration // default 200ms
	MaxBackoff      time.Duration // default 30s
	KeyErrorBackoff time.Duration // after key errors; default 5m
	DialTimeout     time.Duration // default 10s
}

// Status is the connection's state for status.json.
type Status struct {
	State     string
	Relay     string
	LastError string
	AgentID   string
}

// Client connects to a relay, reconnecting forever.
type Client struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	status Status
	reg    *Registration
}

// New returns a Client; it starts nothing.
func New(opts Options) (*Client, error) {
	if opts.Identity == nil || opts.Ring == nil || len(opts.Relays) == 0 || opts.DataDir == "" {
		return nil, errors.New("transport: identity, ring, relays and data dir are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 200 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.KeyErrorBackoff <= 0 {
		opts.KeyErrorBackoff = 5 * time.Minute
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 10 * time.Second
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = 5 * time.Minute
	}
	if opts.RedeliverAfter <= 0 {
		opts.RedeliverAfter = 10 * time.Minute
	}
	reg, err := LoadRegistration(opts.DataDir)
	if err != nil {
		return nil, err
	}
	c := &Client{opts: opts, log: opts.Logger, reg: reg}
	c.status = Status{State: StateConnecting, AgentID: opts.Identity.ID()}
	return c, nil
}

// Status returns the current connection state.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

func (c *Client) setStatus(f func(*Status)) {
	c.mu.Lock()
	old := c.status
	f(&c.status)
	changed := old != c.status
	c.mu.Unlock()
	if changed && c.opts.OnChange != nil {
		c.opts.OnChange()
	}
}

// Run connects and serves until ctx ends, backing off between attempts
// (exponential with full jitter; long for key errors).
func (c *Client) Run(ctx context.Context) error {
	attempt := 0
	for {
		c.setStatus(func(s *Status) { s.State = StateConnecting })
		healthy, err := c.connectOnce(ctx)
		if ctx.Err() != nil {
			c.setStatus(func(s *Status) { s.State = StateConnecting; s.Relay = "" })
			return nil
		}
		if healthy {
			attempt = 0
		}
		wait := c.backoff(attempt)
		if KeyError(err) {
			wait = c.opts.KeyErrorBackoff/2 + rand.N(c.opts.KeyErrorBackoff/2+1)
		}
		attempt++
		c.log.Warn("relay connection failed", "err", err, "retry_in", wait.Round(time.Millisecond))
		c.setStatus(func(s *Status) { s.State = StateError; s.LastError = err.Error(); s.Relay = "" })
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (c *Client) backoff(attempt int) time.Duration {
	ceil := c.opts.MinBackoff << min(attempt, 20)
	if ceil <= 0 || ceil > c.opts.MaxBackoff {
		ceil = c.opts.MaxBackoff
	}
	return c.opts.MinBackoff + rand.N(ceil-c.opts.MinBackoff+1)
}

// relays lists the configured relays, then those the site announced.
func (c *Client) relays() []string {
	rs := slices.Clone(c.opts.Relays)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reg != nil {
		for _, r := range c.reg.Relays {
			if !slices.Contains(rs, r) {
				rs = append(rs, r)
			}
		}
	}
	return rs
}

// connectOnce tries every relay in order and serves the first that answers
// the hello. healthy reports that a session was established.
func (c *Client) connectOnce(ctx context.Context) (healthy bool, err error) {
	var errs []error
	for _, addr := range c.relays() {
		conn, err := c.dial(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		s := &session{c: c, conn: conn, addr: addr}
		healthy, err := s.serve(ctx)
		return healthy, err
	}
	return false, errors.Join(errs...)
}

func (c *Client) dial(ctx context.Context, addr string) (*quic.Conn, error) {
	pin := c.opts.Fingerprint
	tofu := false
	if pin == "" {
		var err error
		if pin, err = loadPin(c.opts.DataDir); err != nil {
			return nil, err
		}
		tofu = pin == ""
	}
	cert, err := c.opts.Identity.Certificate(c.opts.Identity.ID(), nil)
	if err != nil {
		return nil, fmt.Errorf("agent certificate: %w", err)
	}
	var seen string
	var pinErr error
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("relay sent no certificate")
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return fmt.Errorf("relay certificate: %w", err)
		}
		seen = identity.Fingerprint(leaf)
		if tofu {
			return nil
		}
		if err := identity.VerifyPinned(pin)(raw, nil); err != nil {
			pinErr = err
			return err
		}
		return nil
	}
	tlsConf := &tls.Config{
		Certificates:          []tls.Certificate{cert},
		InsecureSkipVerify:    true, // the pin replaces CA validation
		VerifyPeerCertificate: verify,
		MinVersion:            tls.VersionTLS13,
		NextProtos:            []string{framing.ALPN},
	}
	dctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	conn, err := quic.DialAddr(dctx, addr, tlsConf, &quic.Config{
		KeepAlivePeriod:      15 * time.Second,
		MaxIdleTimeout:       45 * time.Second,
		HandshakeIdleTimeout: c.opts.DialTimeout,
	})
	if err != nil {
		if pinErr != nil {
			return nil, fmt.Errorf("relay %s: key does not match the pinned fingerprint sha256:%s (pin from %s): %w",
				addr, pin, c.pinSource(), pinErr)
		}
		return nil, fmt.Errorf("dial relay %s: %w", addr, err)
	}
	if tofu {
		if err := savePin(c.opts.DataDir, seen); err != nil {
			conn.CloseWithError(framing.CloseNormal, "")
			return nil, fmt.Errorf("save relay pin: %w", err)
		}
		c.log.Warn("trusting relay key on first use; pinned it", "relay", addr, "fingerprint", seen, "pin_file", pinFile)
	}
	return conn, nil
}

func (c *Client) pinSource() string {
	if c.opts.Fingerprint != "" {
		return "relay_fingerprint"
	}
	return pinFile
}

func (c *Client) hello() *agentv1.Hello {
	h := &agentv1.Hello{
		AgentVersion:   c.opts.Version,
		ContentVersion: c.opts.ContentVersion,
		Hostname:       c.opts.Hostname,
		Os:             runtime.GOOS,
		Arch:           runtime.GOARCH,
	}
	c.mu.Lock()
	registered := c.reg != nil
	c.mu.Unlock()
	if !registered {
		h.RegistrationKey = c.opts.RegistrationKey
	}
	return h
}

func (c *Client) registered(rep *agentv1.HelloReply) {
	c.mu.Lock()
	reg := registrationFrom(rep, c.reg, c.opts.Now())
	same := sameRegistration(reg, c.reg)
	first := c.reg == nil
	c.reg = reg
	c.mu.Unlock()
	if same {
		return
	}
	if err := saveRegistration(c.opts.DataDir, reg); err != nil {
		c.log.Error("save registration", "err", err)
		return
	}
	if first {
		c.log.Info("registered", "agent_id", reg.AgentID, "tenant", reg.TenantID, "group", reg.GroupID, "relay_id", reg.RelayID)
	}
}
