// Package transport carries the ring's batches to a relay over QUIC, or TLS
// over TCP (yamux streams, direct or through an HTTP CONNECT proxy) when UDP
// does not pass, and brings back the relay's receipts, as docs/design.md ("Agent <-> relay")
// specifies: a control stream (Hello, Heartbeat, Delivered, ReceiptAck,
// Error) and one stream per priority lane (EventBatch out, BatchAck back).
package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/gatehouse/gatehouse/agent/internal/ring"
	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
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
	Clock             clockwork.Clock
	Logger            *slog.Logger
	OnChange          func() // called (without locks) when Status changes
	// OnPolicyTier is called with the policy tier the relay sends in every
	// HelloReply and HeartbeatReply (never with ""); may be nil.
	OnPolicyTier func(tier string)
	// OnCommand runs a server-initiated action and returns its result; it
	// is called one command at a time, off the control stream's reader, and
	// must answer a repeated command id with the same result. nil: every
	// command is answered "unsupported".
	OnCommand func(ctx context.Context, cmd *agentv1.Command) *agentv1.CommandResult

	// Mode is auto (race QUIC and TCP), quic or tcp; default auto.
	Mode string
	// TCPDelay is QUIC's head start in the race; default 300ms.
	TCPDelay time.Duration
	// QUICReprobe is how often a session on TCP checks whether QUIC works
	// again (then reconnects over QUIC); default 10m.
	QUICReprobe time.Duration
	// Proxy is the HTTP CONNECT proxy for TCP; nil: ProxyFromEnv decides.
	Proxy *url.URL
	// ProxyFromEnv maps a relay URL to its proxy (httpproxy's ProxyFunc:
	// HTTPS_PROXY, NO_PROXY...); nil: no proxy.
	ProxyFromEnv func(*url.URL) (*url.URL, error)

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
	Transport string // quic, tcp or tcp+proxy while connected
	Proxy     string // proxy host:port in use (never credentials)
}

// Client connects to a relay, reconnecting forever.
type Client struct {
	cmdMu sync.Mutex    // one command at a time
	hbNow chan struct{} // HeartbeatNow's nudge to the session
	// lastRelay is the relay of the latest session (under mu).
	lastRelay string
	// proxyOverride is the proxy a set_proxy action chose (under mu).
	proxyOverride *url.URL

	opts Options
	log  *slog.Logger

	mem *netMemory

	mu     sync.Mutex
	status Status
	reg    *Registration
	// reregister: the relay did not know this registered agent (its data
	// was lost or replaced), so the next hello carries the key again.
	reregister bool
}

// New returns a Client; it starts nothing.
func New(opts Options) (*Client, error) {
	if opts.Identity == nil || opts.Ring == nil || len(opts.Relays) == 0 || opts.DataDir == "" {
		return nil, errors.New("transport: identity, ring, relays and data dir are required")
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
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
	if opts.Mode == "" {
		opts.Mode = ModeAuto
	}
	switch opts.Mode {
	case ModeAuto, ModeQUIC, ModeTCP:
	default:
		return nil, fmt.Errorf("transport: mode %q, want auto, quic or tcp", opts.Mode)
	}
	if opts.TCPDelay <= 0 {
		opts.TCPDelay = 300 * time.Millisecond
	}
	if opts.QUICReprobe <= 0 {
		opts.QUICReprobe = 10 * time.Minute
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
	mem, err := loadNetMemory(opts.DataDir)
	if err != nil {
		return nil, err
	}
	c := &Client{opts: opts, log: opts.Logger, reg: reg, mem: mem, hbNow: make(chan struct{}, 1)}
	c.status = Status{State: StateConnecting, AgentID: opts.Identity.ID()}
	return c, nil
}

// swapLastRelay records the relay of the session starting now and returns
// the previous one.
func (c *Client) swapLastRelay(addr string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.lastRelay
	c.lastRelay = addr
	return prev
}

// HeartbeatNow sends a heartbeat at once on the live session (or the next).
func (c *Client) HeartbeatNow() {
	select {
	case c.hbNow <- struct{}{}:
	default:
	}
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
			c.setStatus(func(s *Status) { s.State = StateConnecting; s.Relay = ""; s.Transport = "" })
			return nil
		}
		if errors.Is(err, errQUICBack) {
			c.log.Info("QUIC works again on this network; reconnecting over QUIC")
			attempt = 0
			continue
		}
		if healthy {
			attempt = 0
		}
		wait := c.backoff(attempt)
		switch {
		case c.registerAgain(err):
			// Not an operator's problem: the next hello carries the key.
			c.log.Warn("the relay does not know this agent (its data was lost or replaced); registering again with the configured registration key", "err", err)
		case KeyError(err):
			if unknownAgent(err) {
				err = fmt.Errorf("%w; no registration_key is configured, so the agent cannot register again: set registration_key in its config", err)
			}
			wait = c.opts.KeyErrorBackoff/2 + rand.N(c.opts.KeyErrorBackoff/2+1)
		}
		attempt++
		c.log.Warn("relay connection failed", "err", err, "retry_in", wait.Round(time.Millisecond))
		c.setStatus(func(s *Status) { s.State = StateError; s.LastError = err.Error(); s.Relay = ""; s.Transport = "" })
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

// sitePins takes the site's relays from a heartbeat reply of a pinned relay,
// so the agent can move to a relay that joined after it registered.
func (c *Client) sitePins(pins []*agentv1.RelayPin) {
	sp := sitePinsFrom(pins)
	if len(sp) == 0 {
		return
	}
	c.mu.Lock()
	if c.reg == nil || slices.Equal(c.reg.SitePins, sp) {
		c.mu.Unlock()
		return
	}
	reg := *c.reg
	reg.SitePins = sp
	reg.Relays = reg.Relays[:0:0]
	for _, p := range sp {
		reg.Relays = append(reg.Relays, p.Addr)
	}
	c.reg = &reg
	c.mu.Unlock()
	if err := saveRegistration(c.opts.DataDir, &reg); err != nil {
		c.log.Error("save registration", "err", err)
		return
	}
	c.log.Info("site relays updated", "relays", reg.Relays)
}

// siteFingerprints are the keys of the site's relays learnt from a pinned relay.
func (c *Client) siteFingerprints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reg == nil {
		return nil
	}
	out := make([]string, 0, len(c.reg.SitePins))
	for _, p := range c.reg.SitePins {
		out = append(out, p.Fingerprint)
	}
	return out
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
		proxy, _ := c.proxyFor(addr)
		c.setStatus(func(s *Status) { s.Proxy = ProxyHost(proxy) })
		s, rep, rd, err := c.establish(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		return c.serveSwitching(ctx, s, rep, rd)
	}
	return false, errors.Join(errs...)
}

// serveSwitching serves a session and, when its QUIC path stalled and a TCP
// leg answered instead (switchOver), the TCP session at once: no backoff,
// no new race. Batches in flight on QUIC go out again on TCP; the relay
// answers those it already spooled DUPLICATE.
func (c *Client) serveSwitching(ctx context.Context, s *session, rep *agentv1.HelloReply, rd *framing.Reader) (bool, error) {
	for {
		healthy, err := s.serve(ctx, rep, rd)
		var sw *switchOver
		if !errors.As(err, &sw) || ctx.Err() != nil {
			if sw != nil {
				sw.s.conn.Close()
			}
			return healthy, err
		}
		tr := sw.s.conn.Transport()
		c.log.Info("moved from quic to "+tr+" without reconnecting", "relay", s.addr,
			"switch_ms", c.opts.Clock.Now().Sub(sw.stalled).Milliseconds())
		if err := c.mem.set(networkKey(s.addr), tr, c.opts.Clock.Now()); err != nil {
			c.log.Warn("remember transport", "err", err)
		}
		s, rep, rd = sw.s, sw.rep, sw.rd
	}
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
	sendKey := c.reg == nil || c.reregister
	c.mu.Unlock()
	if sendKey {
		h.RegistrationKey = c.opts.RegistrationKey
	}
	return h
}

// registerAgain reports whether err says the relay does not know this
// agent while a registration key is configured; the next hello then
// carries the key again (same identity, same sequence numbers: the cloud
// knows the agent and deduplicates what it resends).
func (c *Client) registerAgain(err error) bool {
	if !unknownAgent(err) || c.opts.RegistrationKey == "" {
		return false
	}
	c.mu.Lock()
	c.reregister = true
	c.mu.Unlock()
	return true
}

// registered records the relay's hello reply. again reports a registration
// made again after the relay had forgotten the agent: that relay lost what
// it had spooled, so batches it acknowledged must go out again.
func (c *Client) registered(rep *agentv1.HelloReply) (again bool) {
	c.mu.Lock()
	reg := registrationFrom(rep, c.reg, c.opts.Clock.Now())
	same := sameRegistration(reg, c.reg)
	first := c.reg == nil
	again = c.reregister && !first
	c.reregister = false
	c.reg = reg
	c.mu.Unlock()
	if again {
		c.log.Info("registered again", "agent_id", reg.AgentID, "tenant", reg.TenantID, "group", reg.GroupID, "relay_id", reg.RelayID)
	}
	if same {
		return again
	}
	if err := saveRegistration(c.opts.DataDir, reg); err != nil {
		c.log.Error("save registration", "err", err)
		return again
	}
	if first {
		c.log.Info("registered", "agent_id", reg.AgentID, "tenant", reg.TenantID, "group", reg.GroupID, "relay_id", reg.RelayID)
	}
	return again
}
