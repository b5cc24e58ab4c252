// Package dnsserver is the relay's DNS server: it answers the site's
// overrides and the relay service name itself from a precomputed,
// atomically swapped snapshot, forwards everything else to upstream
// resolvers (with failover and a bounded cache) or refuses it, and is
// never an open resolver: only allowed client networks are answered, each
// client is rate limited, and isolated hosts resolve only their allow-list.
package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Deps are the server's collaborators.
type Deps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are not registered
	Clock      clockwork.Clock       // nil: the real clock
}

// Server is the DNS server. New binds its sockets; Run serves them.
type Server struct {
	cfg       Config
	log       *slog.Logger
	clock     clockwork.Clock
	allow     []netip.Prefix
	upstreams []string
	limiter   *limiter
	cache     *cache
	m         *metrics

	snap     atomic.Pointer[snapshot]
	setMu    sync.Mutex // serialises snapshot rebuilds
	override []Record
	relays   []Relay

	isoMu    sync.Mutex
	isolated atomic.Pointer[map[netip.Addr]*isoRule]

	udp      []*net.UDPConn
	tcp      *net.TCPListener
	fwdSlots chan struct{}

	closeOnce sync.Once
	closed    chan struct{}
	connMu    sync.Mutex
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup
}

// maxInflight bounds concurrent upstream queries (UDP); more are refused.
const maxInflight = 1024

// maxTCPConns bounds concurrent TCP clients.
const maxTCPConns = 512

// tcpIdle closes a TCP connection that sends nothing for that long.
const tcpIdle = 10 * time.Second

// New validates cfg, builds the override snapshot and binds cfg.Listen on
// UDP (one SO_REUSEPORT socket per worker) and TCP on the same port. It
// starts nothing.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dns config: %w", err)
	}
	s, err := newServer(cfg, deps)
	if err != nil {
		return nil, err
	}
	if err := s.bind(); err != nil {
		return nil, err
	}
	return s, nil
}

// newServer is New without sockets (tests and fuzzing drive handle).
func newServer(cfg Config, deps Deps) (*Server, error) {
	allow, err := parsePrefixes(cfg.AllowNetworks)
	if err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Clock == nil {
		deps.Clock = clockwork.NewRealClock()
	}
	s := &Server{
		cfg:      cfg,
		log:      deps.Logger,
		clock:    deps.Clock,
		allow:    allow,
		limiter:  newLimiter(cfg.RateLimit, deps.Clock),
		cache:    newCache(cfg.CacheSize, deps.Clock),
		fwdSlots: make(chan struct{}, maxInflight),
		closed:   make(chan struct{}),
		conns:    map[net.Conn]struct{}{},
	}
	for _, u := range cfg.Upstreams {
		a, err := upstreamAddr(u)
		if err != nil {
			return nil, err
		}
		s.upstreams = append(s.upstreams, a)
	}
	s.m = newMetrics(deps.Registerer, func() float64 { return float64(s.cache.len()) })
	empty := map[netip.Addr]*isoRule{}
	s.isolated.Store(&empty)
	if err := s.SetOverrides(cfg.Overrides); err != nil {
		return nil, fmt.Errorf("dns overrides: %w", err)
	}
	return s, nil
}

// SetOverrides replaces the override set; queries see the new set at
// once. On error (a bad record) the current set stays.
func (s *Server) SetOverrides(recs []Record) error {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	return s.rebuild(recs, s.relays)
}

// SetHealthyRelays replaces the relays served under the service name.
func (s *Server) SetHealthyRelays(relays []Relay) {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	// Service records are built from validated fields: rebuild cannot
	// fail on them, and the overrides were valid before.
	if err := s.rebuild(s.override, relays); err != nil {
		s.log.Error("dns service records", "err", err)
	}
}

func (s *Server) rebuild(recs []Record, relays []Relay) error {
	rrs := make([]dns.RR, 0, len(recs))
	for i, r := range recs {
		rr, err := r.rrs()
		if err != nil {
			return fmt.Errorf("override %d: %w", i, err)
		}
		rrs = append(rrs, rr)
	}
	snap, err := buildSnapshot(rrs, serviceRRs(s.cfg.ServiceName, uint32(s.cfg.ServiceTTL/time.Second), relays))
	if err != nil {
		return err
	}
	s.override = append([]Record(nil), recs...)
	s.relays = append([]Relay(nil), relays...)
	s.snap.Store(snap)
	return nil
}

// Addr is the bound address (UDP and TCP share the port).
func (s *Server) Addr() netip.AddrPort {
	if len(s.udp) == 0 {
		return netip.AddrPort{}
	}
	return s.udp[0].LocalAddr().(*net.UDPAddr).AddrPort()
}

func (s *Server) bind() error {
	workers := s.cfg.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if !reusePortSupported {
		workers = 1
	}
	var lastErr error
	for range 10 { // a ":0" UDP port may be taken on TCP: try another
		err := s.tryBind(workers)
		if err == nil {
			return nil
		}
		lastErr = err
		_, port, _ := net.SplitHostPort(s.cfg.Listen)
		if port != "0" || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return lastErr
}

func (s *Server) tryBind(workers int) error {
	lc := net.ListenConfig{Control: reusePort}
	ctx := context.Background()
	first, err := lc.ListenPacket(ctx, "udp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("dns listen udp %s: %w", s.cfg.Listen, err)
	}
	conns := []*net.UDPConn{first.(*net.UDPConn)}
	addr := first.LocalAddr().String()
	fail := func(err error) error {
		for _, c := range conns {
			c.Close()
		}
		return err
	}
	for range workers - 1 {
		c, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return fail(fmt.Errorf("dns listen udp %s: %w", addr, err))
		}
		conns = append(conns, c.(*net.UDPConn))
	}
	for _, c := range conns {
		_ = c.SetReadBuffer(4 << 20) // best effort: absorbs bursts
		_ = c.SetWriteBuffer(4 << 20)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fail(fmt.Errorf("dns listen tcp %s: %w", addr, err))
	}
	s.udp, s.tcp = conns, ln.(*net.TCPListener)
	return nil
}

// Run serves until ctx ends, then closes the sockets and waits for every
// goroutine it started.
func (s *Server) Run(ctx context.Context) error {
	if len(s.udp) == 0 || s.tcp == nil {
		return errors.New("dns server: not bound (use New)")
	}
	s.log.Info("dns server listening", "addr", s.Addr().String(), "udp_sockets", len(s.udp),
		"upstreams", s.upstreams, "refuse_unknown", s.cfg.RefuseUnknown)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, c := range s.udp {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveUDP(runCtx, c)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.serveTCP(runCtx)
	}()
	select {
	case <-ctx.Done():
	case <-s.closed:
	}
	cancel()
	s.Close()
	s.wg.Wait()
	return nil
}

// Close closes the sockets and every TCP connection. Idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		for _, c := range s.udp {
			c.Close()
		}
		if s.tcp != nil {
			s.tcp.Close()
		}
		s.connMu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.connMu.Unlock()
	})
	return nil
}

func (s *Server) allowed(a netip.Addr) bool {
	for _, p := range s.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
