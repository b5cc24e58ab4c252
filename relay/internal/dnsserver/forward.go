package dnsserver

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/miekg/dns"
)

// exchange asks the upstreams in order: UDP, then TCP when the answer is
// truncated; a timeout, error, SERVFAIL or REFUSED moves on to the next.
// It returns the first good answer, or the last bad one, or an error.
func (s *Server) exchange(ctx context.Context, job *fwdJob) (*dns.Msg, error) {
	up := new(dns.Msg)
	up.SetQuestion(job.q.Name, job.q.Qtype)
	up.Question[0].Qclass = job.q.Qclass
	up.RecursionDesired = true
	up.CheckingDisabled = job.req.CheckingDisabled
	do := false
	if opt := job.req.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	up.SetEdns0(maxUDPSize, do)
	var last *dns.Msg
	var lastErr error
	for _, addr := range s.upstreams {
		r, err := s.exchangeOne(ctx, up, addr)
		if err != nil {
			s.m.upFail.WithLabelValues(addr).Inc()
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused {
			s.m.upFail.WithLabelValues(addr).Inc()
			last = r
			continue
		}
		return r, nil
	}
	if last != nil {
		return last, nil
	}
	return nil, fmt.Errorf("all upstreams failed for %s: %w", job.q.Name, lastErr)
}

func (s *Server) exchangeOne(ctx context.Context, up *dns.Msg, addr string) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp", Timeout: s.cfg.UpstreamTimeout, UDPSize: maxUDPSize}
	r, _, err := c.ExchangeContext(ctx, up, addr)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, up, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", addr, err)
	}
	return r, nil
}

// resolve runs a forwarding job and packs the answer for the client.
func (s *Server) resolve(ctx context.Context, job *fwdJob, out []byte) []byte {
	s.m.inflight.Inc()
	defer s.m.inflight.Dec()
	r, err := s.exchange(ctx, job)
	if err != nil {
		s.log.Debug("dns forward", "name", job.q.Name, "err", err)
		return s.reply(out, job.req, errorMsg(job.req, dns.RcodeServerFailure), job.proto)
	}
	s.cache.put(job.key, r)
	s.m.answers[srcUpstream].Inc()
	return s.reply(out, job.req, forwarded(job.req, r.Copy()), job.proto)
}

// forwardUDP runs job in a goroutine, bounded by maxInflight; over that the
// client gets REFUSED.
func (s *Server) forwardUDP(ctx context.Context, job *fwdJob, conn *net.UDPConn, to netip.AddrPort) {
	select {
	case s.fwdSlots <- struct{}{}:
	default:
		s.m.refused.WithLabelValues(refusedOverload).Inc()
		if b := s.reply(make([]byte, 0, 512), job.req, errorMsg(job.req, dns.RcodeRefused), protoUDP); b != nil {
			_, _ = conn.WriteToUDPAddrPort(b, to)
		}
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.fwdSlots }()
		if b := s.resolve(ctx, job, make([]byte, 0, 1500)); b != nil {
			_, _ = conn.WriteToUDPAddrPort(b, to)
		}
	}()
}
