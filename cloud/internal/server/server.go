// Package server wires the cloud tier: the store, the HTTPS relay API, the
// admin HTTP server (admin API, metrics, health) and the registration key
// successor job.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/gatehouse/gatehouse/cloud/internal/adminserver"
	"github.com/gatehouse/gatehouse/cloud/internal/relayapi"
	"github.com/gatehouse/gatehouse/cloud/internal/store"
	"github.com/gatehouse/gatehouse/internal/adminhttp"
	"github.com/gatehouse/gatehouse/internal/atomicfile"
	"github.com/gatehouse/gatehouse/internal/dirlock"
	"github.com/gatehouse/gatehouse/internal/identity"
)

// Deps are the server's injected dependencies.
type Deps struct {
	Logger *slog.Logger
	Clock  clockwork.Clock // default: the real clock
}

// Server is a running-to-be cloud tier. New opens the store and binds both
// listeners (so ":0" ports are known at once) but serves nothing until Run.
type Server struct {
	cfg   Config
	log   *slog.Logger
	clock clockwork.Clock

	store       *store.Store
	api         *relayapi.API
	admin       *adminhttp.Server
	relayLn     net.Listener
	fingerprint string
	token       string
	ready       atomic.Bool
	lock        *dirlock.Lock

	closeOnce sync.Once
	closeErr  error
}

// New prepares the server from cfg. On failure it releases whatever it had
// opened and returns the cause.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Clock == nil {
		deps.Clock = clockwork.NewRealClock()
	}
	s := &Server{cfg: cfg, log: deps.Logger, clock: deps.Clock}
	// open's error must not reach a deferred cleanup through a named result:
	// `return nil, err` would nil the server being cleaned up.
	if err := s.open(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// open creates the data directory, the identity, the store and both
// listeners.
func (s *Server) open() error {
	cfg := s.cfg
	var err error
	if s.lock, err = dirlock.Acquire(cfg.DataDir, "gatehouse-cloud"); err != nil {
		return err
	}
	if s.token, err = loadOrCreateToken(s.tokenPath()); err != nil {
		return err
	}
	cert, err := s.certificate()
	if err != nil {
		return err
	}
	if s.store, err = store.Open(store.Options{Dir: cfg.DataDir, Logger: s.log, Clock: s.clock}); err != nil {
		return err
	}
	if s.admin, err = adminhttp.New(cfg.AdminListen, s.readyErr); err != nil {
		return err
	}
	if s.api, err = relayapi.New(relayapi.Config{
		Store: s.store, Logger: s.log.With("component", "relayapi"), Metrics: relayapi.NewMetrics(s.admin.Registry),
	}); err != nil {
		return err
	}
	adminserver.New(s.store, s.token, s.log.With("component", "adminapi")).Register(s.admin.Mux)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("relay api listen %s: %w", cfg.Listen, err)
	}
	s.relayLn = tls.NewListener(ln, &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"h2", "http/1.1"},
	})
	return nil
}

func (s *Server) tokenPath() string {
	if s.cfg.AdminTokenFile != "" {
		return s.cfg.AdminTokenFile
	}
	return filepath.Join(s.cfg.DataDir, "admin.token")
}

// loadOrCreateToken reads the admin token, making a random one (0600) when
// the file does not exist.
func loadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < 16 {
			return "", fmt.Errorf("admin token %s: shorter than 16 characters", path)
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read admin token %s: %w", path, err)
	}
	var r [32]byte
	rand.Read(r[:])
	tok := hex.EncodeToString(r[:])
	if err := atomicfile.Write(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("create admin token: %w", err)
	}
	return tok, nil
}

// certificate loads the identity and its stored certificate (made on first
// start) and writes tls/fingerprint for relays that pin the key instead.
func (s *Server) certificate() (tls.Certificate, error) {
	id, err := identity.LoadOrCreate(filepath.Join(s.cfg.DataDir, "identity"))
	if err != nil {
		return tls.Certificate{}, err
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	hosts = append(hosts, s.cfg.TLSHosts...)
	// Relays may trust this certificate through a CA file, so it must stay
	// the same across restarts.
	dir := filepath.Join(s.cfg.DataDir, "tls")
	cert, err := id.StoredCertificate(filepath.Join(dir, "cert.pem"), "gatehouse-cloud", hosts)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cloud certificate: %w", err)
	}
	s.fingerprint = id.Fingerprint()
	if err := atomicfile.Write(filepath.Join(dir, "fingerprint"), []byte(s.fingerprint+"\n"), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return cert, nil
}

func (s *Server) readyErr() error {
	if !s.ready.Load() {
		return errors.New("starting")
	}
	return nil
}

// RelayAddr is the bound relay API address.
func (s *Server) RelayAddr() string { return s.relayLn.Addr().String() }

// AdminAddr is the bound admin address.
func (s *Server) AdminAddr() string { return s.admin.Addr() }

// AdminToken is the admin API bearer token.
func (s *Server) AdminToken() string { return s.token }

// Fingerprint is the relay API key's pin.
func (s *Server) Fingerprint() string { return s.fingerprint }

// Store gives in-process tests access to the store.
func (s *Server) Store() *store.Store { return s.store }

// Run serves until ctx ends, then stops everything it started and waits.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{
		Handler:           s.api,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// Long polls end when the server stops.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Go(func() {
		if err := srv.Serve(s.relayLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("relay api: %w", err)
			cancel()
		}
	})
	wg.Go(func() {
		if err := s.admin.Run(ctx); err != nil {
			errc <- err
			cancel()
		}
	})
	wg.Go(func() { s.runSuccessors(ctx) })
	s.ready.Store(true)
	s.log.Info("gatehouse-cloud started",
		"relay_api", "https://"+s.RelayAddr(), "admin", "http://"+s.AdminAddr(),
		"fingerprint", s.fingerprint, "data_dir", s.cfg.DataDir, "admin_token_file", s.tokenPath())
	<-ctx.Done()
	s.ready.Store(false)
	shut, cancelShut := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelShut()
	srv.Shutdown(shut)
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	s.log.Info("gatehouse-cloud stopped")
	return errors.Join(errs...)
}

// Close releases the listeners and the store. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.relayLn != nil {
			s.relayLn.Close()
		}
		if s.admin != nil {
			s.admin.Close()
		}
		if s.api != nil {
			s.api.Close()
		}
		if s.store != nil {
			s.closeErr = s.store.Close()
		}
		s.lock.Release()
	})
	return s.closeErr
}
