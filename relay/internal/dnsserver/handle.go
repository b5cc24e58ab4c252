package dnsserver

import (
	"log/slog"
	"net/netip"
	"runtime/debug"
	"strings"

	"github.com/miekg/dns"
)

// fwdJob is a query that needs an upstream: the caller runs it (UDP: in a
// bounded goroutine; TCP: inline).
type fwdJob struct {
	req   *dns.Msg
	q     dns.Question
	key   string
	proto int
	limit int
}

// handle answers one query packet from client. It returns the response
// to send (nil: send nothing) or a job for the upstreams. out is reused
// for the response. Hostile input never panics out of here: a panic is
// recovered, counted and the packet dropped.
func (s *Server) handle(p []byte, client netip.Addr, proto int, out []byte) (resp []byte, job *fwdJob) {
	defer func() {
		if r := recover(); r != nil {
			s.m.panics.Inc()
			s.log.Error("dns packet panicked", "client", client, "panic", r, "stack", string(debug.Stack()))
			resp, job = nil, nil
		}
	}()
	if len(p) < headerLen || p[2]&0x80 != 0 {
		// Too short to answer, or a response: never answer a response
		// (no loops between servers).
		s.m.malformed.Inc()
		return nil, nil
	}
	var key [256]byte
	q, klen, fast := parseFast(p, &key)
	if !s.allowed(client) {
		s.m.refused.WithLabelValues(refusedNetwork).Inc()
		return writeError(out, p, q.qend, dns.RcodeRefused), nil
	}
	if !s.limiter.allow(client) {
		s.m.rateLim.Inc()
		if proto == protoTCP {
			return writeError(out, p, q.qend, dns.RcodeRefused), nil
		}
		return nil, nil
	}
	if fast {
		s.m.query(proto, q.qtype)
		if e := s.snap.Load().names[string(key[:klen])]; e != nil {
			s.m.answers[e.source].Inc()
			return writeFast(out, p, &q, e.lookup(q.qtype), proto), nil
		}
	}
	return s.slow(p, client, proto, fast, out)
}

// slow handles every query the fast path did not answer, with miekg/dns.
func (s *Server) slow(p []byte, client netip.Addr, proto int, counted bool, out []byte) ([]byte, *fwdJob) {
	req := new(dns.Msg)
	if err := req.Unpack(p); err != nil {
		s.m.malformed.Inc()
		return writeError(out, p, 0, dns.RcodeFormatError), nil
	}
	if req.Opcode != dns.OpcodeQuery {
		s.m.refused.WithLabelValues(refusedOpcode).Inc()
		return s.reply(out, req, errorMsg(req, dns.RcodeNotImplemented), proto), nil
	}
	if len(req.Question) != 1 {
		s.m.malformed.Inc()
		return s.reply(out, req, errorMsg(req, dns.RcodeFormatError), proto), nil
	}
	q := req.Question[0]
	if !counted {
		s.m.query(proto, q.Qtype)
	}
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		m := errorMsg(req, dns.RcodeBadVers)
		m.SetEdns0(maxUDPSize, opt.Do())
		m.Rcode = dns.RcodeBadVers
		return s.pack(out, m, proto, maxUDPSize), nil
	}
	name := strings.ToLower(q.Name)
	if q.Qclass == dns.ClassINET {
		if key, err := wireKey(name); err == nil {
			if e := s.snap.Load().names[key]; e != nil {
				s.m.answers[e.source].Inc()
				m := e.lookup(q.Qtype).msg.Copy()
				m.Question = req.Question
				return s.reply(out, req, m, proto), nil
			}
		}
	} else if q.Qclass != dns.ClassANY {
		s.m.refused.WithLabelValues(refusedClass).Inc()
		return s.reply(out, req, errorMsg(req, dns.RcodeRefused), proto), nil
	}
	if rule := s.isolationRule(client); rule != nil && !rule.allows(dns.Fqdn(name)) {
		s.m.answers[srcIsolation].Inc()
		m := errorMsg(req, dns.RcodeNameError)
		m.Authoritative = true
		return s.reply(out, req, m, proto), nil
	}
	if s.cfg.RefuseUnknown || len(s.upstreams) == 0 {
		s.m.refused.WithLabelValues(refusedUnknown).Inc()
		return s.reply(out, req, errorMsg(req, dns.RcodeRefused), proto), nil
	}
	do := false
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	key := cacheKey(q, do, req.CheckingDisabled)
	if m := s.cache.get(key); m != nil {
		s.m.answers[srcCache].Inc()
		return s.reply(out, req, forwarded(req, m), proto), nil
	}
	return nil, &fwdJob{req: req, q: q, key: key, proto: proto, limit: limitOf(req, proto)}
}

// forwarded fits an upstream answer, fresh or from the cache, to req. The
// relay is authoritative only for its overrides and service name: an
// upstream's AA is cleared, or a cached answer would look like the relay's
// own data. AD is kept only for a client that asked for it with AD or DO
// (RFC 6840 5.7-5.8). m is modified.
func forwarded(req, m *dns.Msg) *dns.Msg {
	m.Question = req.Question
	m.Authoritative = false
	do := false
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	if !req.AuthenticatedData && !do {
		m.AuthenticatedData = false
	}
	return m
}

func errorMsg(req *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	return m
}

func limitOf(req *dns.Msg, proto int) int {
	if proto == protoTCP {
		return maxTCPSize
	}
	if opt := req.IsEdns0(); opt != nil {
		return min(max(int(opt.UDPSize()), minUDPSize), maxUDPSize)
	}
	return minUDPSize
}

// reply fits m to req (ID, flags, EDNS, size) and packs it into out.
func (s *Server) reply(out []byte, req, m *dns.Msg, proto int) []byte {
	m.Id = req.Id
	m.Response = true
	m.Opcode = req.Opcode
	m.RecursionDesired = req.RecursionDesired
	m.RecursionAvailable = true
	m.CheckingDisabled = req.CheckingDisabled
	m.Truncated = false
	stripOPT(m)
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(maxUDPSize, opt.Do())
	}
	return s.pack(out, m, proto, limitOf(req, proto))
}

func (s *Server) pack(out []byte, m *dns.Msg, proto, limit int) []byte {
	m.Compress = true
	if proto == protoUDP {
		m.Truncate(limit)
	}
	b, err := m.PackBuffer(out[:cap(out)])
	if err != nil {
		s.log.Warn("dns pack response", "name", questionName(m), "err", err)
		s.m.malformed.Inc()
		return nil
	}
	return b
}

func questionName(m *dns.Msg) slog.Value {
	if len(m.Question) == 0 {
		return slog.StringValue("")
	}
	return slog.StringValue(m.Question[0].Name)
}
