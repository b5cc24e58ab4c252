package dnsserver

import (
	"maps"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// isoRule is an isolated client's allow-list: exact names and, for
// entries written "*.example.com" or ".example.com", every name under them.
type isoRule struct {
	exact    map[string]bool
	suffixes []string // ".example.com."
}

func newIsoRule(names []string) *isoRule {
	r := &isoRule{exact: map[string]bool{}}
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		switch {
		case n == "":
		case strings.HasPrefix(n, "*."):
			r.suffixes = append(r.suffixes, dns.Fqdn(n[1:]))
		case strings.HasPrefix(n, "."):
			r.suffixes = append(r.suffixes, dns.Fqdn(n))
		default:
			r.exact[dns.Fqdn(n)] = true
		}
	}
	return r
}

// allows reports whether the lower-case FQDN name is on the list.
func (r *isoRule) allows(name string) bool {
	if r.exact[name] {
		return true
	}
	for _, s := range r.suffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// SetIsolated puts clientIP under strict isolation DNS: it resolves only
// allowNames ("host.example.com", "*.example.com") plus the overrides and
// the service name, and gets NXDOMAIN for the rest. It has no effect while
// strict_isolation is off. Calling it again replaces the list.
func (s *Server) SetIsolated(clientIP netip.Addr, allowNames []string) {
	s.isoMu.Lock()
	defer s.isoMu.Unlock()
	next := maps.Clone(*s.isolated.Load())
	next[clientIP.Unmap()] = newIsoRule(allowNames)
	s.isolated.Store(&next)
}

// ClearIsolated lifts strict isolation DNS for clientIP.
func (s *Server) ClearIsolated(clientIP netip.Addr) {
	s.isoMu.Lock()
	defer s.isoMu.Unlock()
	next := maps.Clone(*s.isolated.Load())
	delete(next, clientIP.Unmap())
	s.isolated.Store(&next)
}

// isolationRule is the client's rule when strict isolation applies to it.
func (s *Server) isolationRule(client netip.Addr) *isoRule {
	if !s.cfg.StrictIsolation {
		return nil
	}
	m := *s.isolated.Load()
	if len(m) == 0 {
		return nil
	}
	return m[client]
}
