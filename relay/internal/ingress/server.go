// Package ingress accepts agents over QUIC and over TLS/TCP (yamux streams)
// on the same port: TLS 1.3 with pinned relay key and agent client
// certificates, a control stream (hello, heartbeats, receipts) and lane
// streams whose batches are acked only once the spool has them on disk. See
// docs/design.md "Agent <-> relay".
package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/gatehouse/gatehouse/internal/atomicfile"
	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// Options configure a Server.
type Options struct {
	Listen            string   // UDP (QUIC) and TCP (TLS) address, same port
	Advertise         []string // host:port agents are told (HelloReply.relays)
	DataDir           string   // identity lives in <DataDir>/identity
	Name              string   // certificate common name
	HeartbeatInterval time.Duration
	RetryAfter        time.Duration // sent with SPOOL_FULL
	MaxInflight       int           // per lane; default 64
	Logger            *slog.Logger
	Registerer        prometheus.Registerer
	Clock             clockwork.Clock // nil: the real clock
}

// Deps are the components ingress works with.
type Deps struct {
	Store Store // batches and receipts: the spool
	Site  Site  // registry, keys, commands, pins: the site state
	// Identity is who the relay is at the cloud; nil: not enrolled.
	Identity Identity
	Cloud    Registrar // nil: offline registration only
	Results  Results   // nil: command results are logged only
}

type noIdentity struct{}

func (noIdentity) RelayID() string  { return "" }
func (noIdentity) TenantID() string { return "" }

// Server is the agent listener. New binds; Run serves; Close is idempotent.
type Server struct {
	h       *handler
	ln      *quic.Listener
	tcp     net.Listener
	tlsConf *tls.Config
	fp      string
	hub     *hub
	log     *slog.Logger
	once    sync.Once

	errorGrace time.Duration // wait after an Error frame before closing

	connected atomic.Int64
}

// New loads the relay identity, writes its fingerprint file and binds the
// UDP and TCP listeners. It starts no goroutine.
func New(o Options, deps Deps) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 64
	}
	if deps.Store == nil || deps.Site == nil {
		return nil, errors.New("ingress: a store and a site state are required")
	}
	if deps.Identity == nil {
		deps.Identity = noIdentity{}
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 5 * time.Minute
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = 2 * time.Second
	}
	idDir := filepath.Join(o.DataDir, "identity")
	id, err := identity.LoadOrCreate(idDir)
	if err != nil {
		return nil, err
	}
	var hosts []string
	for _, a := range o.Advertise {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" {
			hosts = append(hosts, h)
		}
	}
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	cert, err := id.Certificate(o.Name, hosts)
	if err != nil {
		return nil, err
	}
	fp := id.Fingerprint()
	if err := atomicfile.Write(filepath.Join(idDir, "fingerprint"), []byte(fp+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write relay fingerprint: %w", err)
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		NextProtos:   []string{framing.ALPN},
	}
	qc := &quic.Config{
		MaxIdleTimeout:     2 * time.Minute,
		KeepAlivePeriod:    30 * time.Second,
		MaxIncomingStreams: 16,
		// Flow control bounds what one agent can make the relay buffer;
		// frames larger than the window still stream through.
		MaxStreamReceiveWindow:     1 << 20,
		MaxConnectionReceiveWindow: 2 << 20,
	}
	ln, tcp, err := listen(o.Listen, tc, qc)
	if err != nil {
		return nil, err
	}
	log := o.Logger.With("component", "ingress")
	s := &Server{
		ln:         ln,
		tcp:        tcp,
		tlsConf:    tc,
		fp:         fp,
		errorGrace: time.Second,
		log:        log,
		h: &handler{
			store: deps.Store, site: deps.Site, id: deps.Identity, results: deps.Results, cloud: deps.Cloud,
			m: newMetrics(o.Registerer), log: log, now: o.Clock.Now, relays: o.Advertise, fingerprint: fp,
			heartbeat: o.HeartbeatInterval, retryAfter: o.RetryAfter, maxInflight: o.MaxInflight,
			regTimeout: 10 * time.Second,
		},
	}
	s.hub = newHub(s.h.m, log)
	return s, nil
}

// PushCommand sends cmd at once to the agent if it is connected here,
// reporting whether it was queued; otherwise the agent gets it at its next
// connect or heartbeat.
func (s *Server) PushCommand(agentID string, cmd *agentv1.Command) bool {
	return s.hub.push(agentID, frame(cmd))
}

// AgentAddr is the address a connected agent reaches this relay from
// (what the relay's DNS server sees as its client); false when not here.
func (s *Server) AgentAddr(agentID string) (netip.Addr, bool) { return s.hub.addr(agentID) }

// Addr is the bound UDP address (QUIC).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// TCPAddr is the bound TCP address (TLS); same port number as Addr.
func (s *Server) TCPAddr() net.Addr { return s.tcp.Addr() }

// Fingerprint is the relay key's fingerprint agents pin.
func (s *Server) Fingerprint() string { return s.fp }

// Connected is the number of admitted agent connections.
func (s *Server) Connected() int { return int(s.connected.Load()) }

// Delivered pushes receipts to agentID if it is connected. It never blocks:
// receipts are durable and sent again at the agent's next connect.
func (s *Server) Delivered(agentID string, seqs []uint64) { s.hub.deliver(agentID, seqs) }

// Run accepts QUIC and TLS/TCP connections until ctx ends, then closes
// them all and waits for their goroutines.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer s.Close()
	var tcpErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.acceptTCP(ctx, &wg); err != nil {
			tcpErr = err
			cancel()
		}
	}()
	for {
		conn, err := s.ln.Accept(ctx)
		if err != nil {
			cancel()
			s.Close()
			wg.Wait()
			if tcpErr != nil {
				return tcpErr
			}
			if ctx.Err() != nil || errors.Is(err, quic.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, quicConn{conn})
		}()
	}
}

// Close stops the listener. Idempotent.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() { err = errors.Join(s.ln.Close(), s.tcp.Close()) })
	return err
}
