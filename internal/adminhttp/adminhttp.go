// Package adminhttp serves what operators and orchestrators scrape from a
// daemon's admin address: Prometheus metrics, liveness and readiness, and any
// extra handlers the daemon adds (status pages, APIs).
package adminhttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ReadyFunc reports nil when the daemon can do its work, or why not.
type ReadyFunc func() error

// Server is an admin HTTP server. Mux is open for extra routes until Run.
type Server struct {
	Mux      *http.ServeMux
	Registry *prometheus.Registry
	ln       net.Listener
	checks   []check
}

// check is a named readiness condition beyond the ReadyFunc.
type check struct {
	name string
	f    ReadyFunc
}

// AddCheck adds a named readiness condition to /readyz, before Run. A probe
// may leave it out with /readyz?exclude=name (as a load balancer that
// should keep a node in rotation through that condition would).
func (s *Server) AddCheck(name string, f ReadyFunc) {
	s.checks = append(s.checks, check{name, f})
}

// notReady returns why the server is not ready, checks in excluded aside.
func (s *Server) notReady(ready ReadyFunc, excluded []string) error {
	if ready != nil {
		if err := ready(); err != nil {
			return err
		}
	}
	for _, c := range s.checks {
		if slices.Contains(excluded, c.name) {
			continue
		}
		if err := c.f(); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	return nil
}

// New binds addr (so the caller learns a ":0" port at once) and registers
// /metrics, /healthz and /readyz. The registry gets Go runtime and process
// collectors.
func New(addr string, ready ReadyFunc) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", addr, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	s := &Server{Mux: mux, Registry: reg, ln: ln}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.notReady(ready, r.URL.Query()["exclude"]); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close releases the listener of a server that will not Run (its owner
// failed to start); after Run it is a no-op.
func (s *Server) Close() error {
	if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Run serves until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	srv := &http.Server{Handler: s.Mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin server: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shut)
	if e := <-errc; e != nil && !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}
