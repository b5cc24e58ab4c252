package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var testOverrides = []Record{
	{Name: "ingest.cloud.example.com", Type: "A", TTL: 300 * time.Second, Value: "192.0.2.10"},
	{Name: "ingest.cloud.example.com", Type: "A", Value: "192.0.2.11"},
	{Name: "ingest.cloud.example.com", Type: "AAAA", Value: "2001:db8::10"},
	{Name: "api.cloud.example.com", Type: "CNAME", Value: "ingest.cloud.example.com"},
	{Name: "_gatehouse._tcp.cloud.example.com", Type: "SRV", Value: "10 5 443 ingest.cloud.example.com"},
	{Name: "cloud.example.com", Type: "TXT", Value: "v=gatehouse1 site=lab"},
}

// testConfig serves testOverrides on 127.0.0.1:0 to loopback clients.
func testConfig() Config {
	cfg := Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.AllowNetworks = []string{"127.0.0.1/32", "::1/128"}
	cfg.Overrides = testOverrides
	cfg.RefuseUnknown = true
	cfg.RateLimit = RateLimit{}
	cfg.Workers = 2
	return cfg
}

// start runs a server for the test and returns it with its registry.
func start(t *testing.T, cfg Config) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := New(cfg, Deps{Registerer: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s, reg
}

func ask(t *testing.T, s *Server, network, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	r, err := exchange(s.Addr().String(), network, name, qtype, edns, "")
	if err != nil {
		t.Fatalf("%s %s/%s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

func exchange(addr, network, name string, qtype uint16, edns uint16, laddr string) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	if laddr != "" {
		if network == "tcp" {
			c.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(laddr)}, Timeout: 5 * time.Second}
		} else {
			c.Dialer = &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(laddr)}, Timeout: 5 * time.Second}
		}
	}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		f := strings.Split(rr.String(), "\t")
		out = append(out, fmt.Sprintf("%s %s %s %s", f[0], f[1], f[3], strings.Join(f[4:], " ")))
	}
	return out
}

func TestOverridesEveryType(t *testing.T) {
	s, reg := start(t, testConfig())
	tests := []struct {
		name  string
		qtype uint16
		want  []string
		rcode int
	}{
		{"ingest.cloud.example.com", dns.TypeA, []string{"ingest.cloud.example.com. 300 A 192.0.2.10", "ingest.cloud.example.com. 60 A 192.0.2.11"}, 0},
		{"INGEST.Cloud.Example.COM", dns.TypeA, []string{"INGEST.Cloud.Example.COM. 300 A 192.0.2.10", "INGEST.Cloud.Example.COM. 60 A 192.0.2.11"}, 0},
		{"ingest.cloud.example.com", dns.TypeAAAA, []string{"ingest.cloud.example.com. 60 AAAA 2001:db8::10"}, 0},
		{"api.cloud.example.com", dns.TypeA, []string{"api.cloud.example.com. 60 CNAME ingest.cloud.example.com.", "ingest.cloud.example.com. 300 A 192.0.2.10", "ingest.cloud.example.com. 60 A 192.0.2.11"}, 0},
		{"api.cloud.example.com", dns.TypeCNAME, []string{"api.cloud.example.com. 60 CNAME ingest.cloud.example.com."}, 0},
		{"api.cloud.example.com", dns.TypeMX, []string{"api.cloud.example.com. 60 CNAME ingest.cloud.example.com."}, 0},
		{"_gatehouse._tcp.cloud.example.com", dns.TypeSRV, []string{"_gatehouse._tcp.cloud.example.com. 60 SRV 10 5 443 ingest.cloud.example.com."}, 0},
		{"cloud.example.com", dns.TypeTXT, []string{`cloud.example.com. 60 TXT "v=gatehouse1 site=lab"`}, 0},
		{"cloud.example.com", dns.TypeA, nil, 0}, // NODATA
		// ANY (RFC 8482): the name's A and AAAA; HINFO "RFC8482" when it has
		// neither; an alias's CNAME.
		{"ingest.cloud.example.com", dns.TypeANY, []string{"ingest.cloud.example.com. 300 A 192.0.2.10", "ingest.cloud.example.com. 60 A 192.0.2.11", "ingest.cloud.example.com. 60 AAAA 2001:db8::10"}, 0},
		{"cloud.example.com", dns.TypeANY, []string{`cloud.example.com. 60 HINFO "RFC8482" ""`}, 0},
		{"api.cloud.example.com", dns.TypeANY, []string{"api.cloud.example.com. 60 CNAME ingest.cloud.example.com."}, 0},
		{"other.example.com", dns.TypeA, nil, dns.RcodeRefused},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, edns := range []uint16{0, 1232} {
			for _, tt := range tests {
				r := ask(t, s, network, tt.name, tt.qtype, edns)
				if r.Rcode != tt.rcode {
					t.Errorf("%s edns=%d %s/%s: got rcode %s, want %s", network, edns, tt.name, dns.TypeToString[tt.qtype], dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
				}
				if got := rrStrings(r.Answer); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
					t.Errorf("%s edns=%d %s/%s: got %q, want %q", network, edns, tt.name, dns.TypeToString[tt.qtype], got, tt.want)
				}
				if (edns > 0) != (r.IsEdns0() != nil) {
					t.Errorf("%s edns=%d %s: got OPT %v", network, edns, tt.name, r.IsEdns0())
				}
				if tt.rcode == 0 && !r.Authoritative {
					t.Errorf("%s %s: got AA=false, want true", network, tt.name)
				}
			}
		}
	}
	// SRV glue: the target's addresses in the additional section.
	r := ask(t, s, "udp", "_gatehouse._tcp.cloud.example.com", dns.TypeSRV, 1232)
	if got := len(r.Extra); got != 4 { // 2 A, 1 AAAA, OPT
		t.Errorf("SRV additional: got %d records %v, want 4", got, r.Extra)
	}
	if got := testutil.ToFloat64(s.m.answers[srcOverride]); got < 36 {
		t.Errorf("answers_total{source=override}: got %v, want >= 36", got)
	}
	if n, err := testutil.GatherAndCount(reg, "gatehouse_dns_queries_total"); err != nil || n == 0 {
		t.Errorf("queries_total series: got %d, %v", n, err)
	}
}

func TestTruncationOverUDPCompleteOverTCP(t *testing.T) {
	cfg := testConfig()
	var recs []Record
	for i := range 40 {
		recs = append(recs,
			Record{Name: "big.example.com", Type: "TXT", Value: fmt.Sprintf("%02d-%s", i, strings.Repeat("x", 60))})
	}
	// 25 SRV with their glue do not fit 1232 bytes; they fit
	// without it (the additional section is dropped, no TC).
	for i := range 25 {
		recs = append(recs,
			Record{Name: "_svc._tcp.example.com", Type: "SRV", Value: fmt.Sprintf("10 10 443 node-%02d.example.com", i)},
			Record{Name: fmt.Sprintf("node-%02d.example.com", i), Type: "A", Value: fmt.Sprintf("192.0.2.%d", i+1)})
	}
	recs = append(recs, Record{Name: "long.example.com", Type: "TXT", Value: strings.Repeat("y", 700)})
	cfg.Overrides = recs
	s, _ := start(t, cfg)

	tests := []struct {
		name    string
		qtype   uint16
		network string
		edns    uint16
		wantTC  bool
		wantN   int
	}{
		{"big.example.com", dns.TypeTXT, "udp", 0, true, 0},
		{"big.example.com", dns.TypeTXT, "udp", 4096, true, 0},
		{"big.example.com", dns.TypeTXT, "tcp", 0, false, 40},
		{"_svc._tcp.example.com", dns.TypeSRV, "udp", 0, true, 0},
		{"_svc._tcp.example.com", dns.TypeSRV, "udp", 1232, false, 25}, // fits without the glue
		{"_svc._tcp.example.com", dns.TypeSRV, "tcp", 0, false, 25},
		{"long.example.com", dns.TypeTXT, "udp", 0, true, 0},
		{"long.example.com", dns.TypeTXT, "udp", 1232, false, 1},
	}
	for _, tt := range tests {
		m := new(dns.Msg)
		m.SetQuestion(tt.name+".", tt.qtype)
		if tt.edns > 0 {
			m.SetEdns0(tt.edns, false)
		}
		// A raw exchange: miekg's client would retry nothing, but check
		// the TC bit and the size ourselves.
		c := &dns.Client{Net: tt.network, Timeout: 5 * time.Second, UDPSize: 65535}
		r, _, err := c.Exchange(m, s.Addr().String())
		if err != nil {
			t.Fatalf("%s %s: %v", tt.network, tt.name, err)
		}
		if r.Truncated != tt.wantTC || len(r.Answer) != tt.wantN {
			t.Errorf("%s edns=%d %s: got TC=%v %d answers, want TC=%v %d", tt.network, tt.edns, tt.name, r.Truncated, len(r.Answer), tt.wantTC, tt.wantN)
		}
		if tt.network == "udp" {
			r.Compress = true
			b, _ := r.Pack()
			limit := 512
			if tt.edns > 0 {
				limit = min(int(tt.edns), 1232)
			}
			if len(b) > limit {
				t.Errorf("udp %s: got %d bytes, want <= %d", tt.name, len(b), limit)
			}
		}
	}
	r := ask(t, s, "tcp", "long.example.com", dns.TypeTXT, 0)
	if got := strings.Join(r.Answer[0].(*dns.TXT).Txt, ""); got != strings.Repeat("y", 700) {
		t.Errorf("long TXT: got %d bytes, want 700", len(got))
	}
}

func TestOverrideChangeSeenAtOnce(t *testing.T) {
	s, _ := start(t, testConfig())
	for i := range 20 {
		ip := fmt.Sprintf("198.51.100.%d", i+1)
		if err := s.SetOverrides([]Record{{Name: "moving.example.com", Type: "A", Value: ip}}); err != nil {
			t.Fatalf("SetOverrides: %v", err)
		}
		r := ask(t, s, "udp", "moving.example.com", dns.TypeA, 0)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != ip {
			t.Fatalf("after change %d: got %v, want %s", i, r.Answer, ip)
		}
	}
	if err := s.SetOverrides([]Record{{Name: "bad", Type: "A", Value: "not-an-ip"}}); err == nil {
		t.Fatal("SetOverrides(bad): got nil error")
	}
	if r := ask(t, s, "udp", "moving.example.com", dns.TypeA, 0); len(r.Answer) != 1 {
		t.Errorf("after a rejected change: got %v, want the previous set", r.Answer)
	}
	if r := ask(t, s, "udp", "ingest.cloud.example.com", dns.TypeA, 0); r.Rcode != dns.RcodeRefused {
		t.Errorf("removed override: got %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
}

func TestServiceNameHealthyRelays(t *testing.T) {
	cfg := testConfig()
	cfg.ServiceName = "relay.gatehouse.internal"
	s, _ := start(t, cfg)
	if r := ask(t, s, "udp", "relay.gatehouse.internal", dns.TypeA, 0); r.Rcode != dns.RcodeRefused {
		t.Errorf("no healthy relay: got %s, want REFUSED (not served)", dns.RcodeToString[r.Rcode])
	}
	s.SetHealthyRelays([]Relay{
		{Name: "r1", IPs: []netip.Addr{netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("fd00::1")}, Port: 443},
		{Name: "r2", IPs: []netip.Addr{netip.MustParseAddr("10.1.0.2")}},
	})
	r := ask(t, s, "tcp", "relay.gatehouse.internal", dns.TypeA, 0)
	if got := rrStrings(r.Answer); len(got) != 2 || got[0] != "relay.gatehouse.internal. 5 A 10.1.0.1" {
		t.Errorf("service A: got %q", got)
	}
	r = ask(t, s, "udp", "relay.gatehouse.internal", dns.TypeSRV, 1232)
	if got := rrStrings(r.Answer); len(got) != 2 || got[1] != "relay.gatehouse.internal. 5 SRV 10 10 443 r2.relay.gatehouse.internal." {
		t.Errorf("service SRV: got %q", got)
	}
	if len(r.Extra) != 4 { // r1 A+AAAA, r2 A, OPT
		t.Errorf("service SRV glue: got %v", r.Extra)
	}
	r = ask(t, s, "udp", "r1.relay.gatehouse.internal", dns.TypeAAAA, 0)
	if got := rrStrings(r.Answer); len(got) != 1 || got[0] != "r1.relay.gatehouse.internal. 5 AAAA fd00::1" {
		t.Errorf("relay AAAA: got %q", got)
	}
	// r1 dies: dropped at once.
	s.SetHealthyRelays([]Relay{{Name: "r2", IPs: []netip.Addr{netip.MustParseAddr("10.1.0.2")}}})
	r = ask(t, s, "udp", "relay.gatehouse.internal", dns.TypeA, 0)
	if got := rrStrings(r.Answer); len(got) != 1 || got[0] != "relay.gatehouse.internal. 5 A 10.1.0.2" {
		t.Errorf("after r1 died: got %q", got)
	}
	if got := testutil.ToFloat64(s.m.answers[srcService]); got != 4 {
		t.Errorf("answers_total{source=service}: got %v, want 4", got)
	}
}

// upstream runs a miekg/dns server answering every A query with 203.0.113.7
// (TTL 30) and NXDOMAIN with an SOA for names under "nx.".
func upstream(t *testing.T, hits *atomic.Int64) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Skipf("upstream tcp port taken: %v", err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		hits.Add(1)
		m := new(dns.Msg)
		m.SetReply(req)
		// As an authoritative, validating server answers: the relay must
		// not pass these flags on as its own.
		m.Authoritative = true
		m.AuthenticatedData = true
		q := req.Question[0]
		switch {
		case strings.HasSuffix(q.Name, "nx."):
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "nx.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 600},
				Ns: "ns.nx.", Mbox: "h.nx.", Serial: 1, Refresh: 1, Retry: 1, Expire: 1, Minttl: 120}}
		case q.Qtype == dns.TypeA:
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: net.IPv4(203, 0, 113, 7)}}
		}
		_ = w.WriteMsg(m)
	})
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return pc.LocalAddr().String()
}

// deadUpstream is a UDP port that never answers.
func deadUpstream(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func TestForwardingFailoverAndCache(t *testing.T) {
	var hits atomic.Int64
	dead := deadUpstream(t)
	cfg := testConfig()
	cfg.RefuseUnknown = false
	cfg.UpstreamTimeout = 300 * time.Millisecond
	cfg.Upstreams = []string{dead, upstream(t, &hits)}
	s, reg := start(t, cfg)

	for _, network := range []string{"udp", "tcp"} {
		r := ask(t, s, network, "www.example.org", dns.TypeA, 1232)
		if got := rrStrings(r.Answer); len(got) != 1 || !strings.HasSuffix(got[0], "A 203.0.113.7") {
			t.Errorf("%s forwarded: got %q", network, got)
		}
		if r.Authoritative {
			t.Errorf("%s forwarded (%s): got AA, want not authoritative", network, map[string]string{"udp": "fresh", "tcp": "cached"}[network])
		}
		if r.AuthenticatedData {
			t.Errorf("%s forwarded: got AD for a client that set neither AD nor DO", network)
		}
	}
	// A client that sets AD still learns what the upstream validated.
	m := new(dns.Msg)
	m.SetQuestion("www.example.org.", dns.TypeA)
	m.AuthenticatedData = true
	if r, err := dns.Exchange(m, s.Addr().String()); err != nil || !r.AuthenticatedData || r.Authoritative {
		t.Errorf("cached answer to a client setting AD: got %v (err %v), want AD and not AA", r, err)
	}
	if got := hits.Load(); got != 1 {
		t.Errorf("upstream hits: got %d, want 1 (second answer from cache)", got)
	}
	r := ask(t, s, "udp", "missing.nx", dns.TypeA, 0)
	if r.Rcode != dns.RcodeNameError {
		t.Errorf("NXDOMAIN: got %s", dns.RcodeToString[r.Rcode])
	}
	ask(t, s, "udp", "missing.nx", dns.TypeA, 0)
	if got := hits.Load(); got != 2 {
		t.Errorf("upstream hits after negative answer twice: got %d, want 2", got)
	}
	if got := testutil.ToFloat64(s.m.upFail.WithLabelValues(dead)); got != 2 {
		t.Errorf("upstream_failures_total{upstream=dead}: got %v, want 2", got)
	}
	if got := testutil.ToFloat64(s.m.answers[srcCache]); got != 3 {
		t.Errorf("answers_total{source=cache}: got %v, want 3", got)
	}
	// An answer fetched with checking disabled is not served to a client
	// that wants it checked (and the other way round).
	before := hits.Load()
	for _, cd := range []bool{true, false, true} {
		m := new(dns.Msg)
		m.SetQuestion("cd.example.org.", dns.TypeA)
		m.CheckingDisabled = cd
		if _, err := dns.Exchange(m, s.Addr().String()); err != nil {
			t.Fatal(err)
		}
	}
	if got := hits.Load() - before; got != 2 {
		t.Errorf("upstream hits for CD=1, CD=0, CD=1: got %d, want 2 (CD=0 must not get the CD=1 answer; the second CD=1 is cached)", got)
	}
	// Overrides still win over upstream.
	if r := ask(t, s, "udp", "ingest.cloud.example.com", dns.TypeA, 0); len(r.Answer) != 2 {
		t.Errorf("override with forwarding on: got %v", r.Answer)
	}
	if _, err := testutil.GatherAndCount(reg); err != nil {
		t.Errorf("gather: %v", err)
	}
}

func TestAllUpstreamsDeadServfail(t *testing.T) {
	cfg := testConfig()
	cfg.RefuseUnknown = false
	cfg.UpstreamTimeout = 200 * time.Millisecond
	cfg.Upstreams = []string{deadUpstream(t)}
	s, _ := start(t, cfg)
	if r := ask(t, s, "udp", "www.example.org", dns.TypeA, 0); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("got %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
}

func TestRefusedOutsideAllowNetworks(t *testing.T) {
	cfg := testConfig()
	cfg.AllowNetworks = []string{"127.0.0.1/32"}
	s, _ := start(t, cfg)
	for _, network := range []string{"udp", "tcp"} {
		r, err := exchange(s.Addr().String(), network, "ingest.cloud.example.com", dns.TypeA, 0, "127.0.0.2")
		if err != nil {
			var oe *net.OpError
			if errors.As(err, &oe) && oe.Op == "dial" {
				t.Skipf("cannot bind 127.0.0.2: %v", err)
			}
			t.Fatalf("%s from 127.0.0.2: %v", network, err)
		}
		if r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
			t.Errorf("%s from 127.0.0.2: got %s %v, want REFUSED", network, dns.RcodeToString[r.Rcode], r.Answer)
		}
	}
	if got := testutil.ToFloat64(s.m.refused.WithLabelValues(refusedNetwork)); got != 2 {
		t.Errorf("refused_total{reason=network}: got %v, want 2", got)
	}
	if r := ask(t, s, "udp", "ingest.cloud.example.com", dns.TypeA, 0); r.Rcode != 0 {
		t.Errorf("from 127.0.0.1: got %s", dns.RcodeToString[r.Rcode])
	}
}

func TestRateLimit(t *testing.T) {
	cfg := testConfig()
	cfg.RateLimit = RateLimit{QPS: 0.001, Burst: 5}
	s, _ := start(t, cfg)
	for i := range 5 {
		ask(t, s, "udp", "ingest.cloud.example.com", dns.TypeA, 0)
		_ = i
	}
	// Over the limit: UDP is dropped (the client times out), TCP refused.
	m := new(dns.Msg)
	m.SetQuestion("ingest.cloud.example.com.", dns.TypeA)
	c := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
	if r, _, err := c.Exchange(m, s.Addr().String()); err == nil {
		t.Errorf("udp over limit: got %s, want no answer", dns.RcodeToString[r.Rcode])
	}
	if r := ask(t, s, "tcp", "ingest.cloud.example.com", dns.TypeA, 0); r.Rcode != dns.RcodeRefused {
		t.Errorf("tcp over limit: got %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	if got := testutil.ToFloat64(s.m.rateLim); got != 2 {
		t.Errorf("rate_limited_total: got %v, want 2", got)
	}
}

func TestStrictIsolation(t *testing.T) {
	var hits atomic.Int64
	cfg := testConfig()
	cfg.RefuseUnknown = false
	cfg.StrictIsolation = true
	cfg.Upstreams = []string{upstream(t, &hits)}
	s, _ := start(t, cfg)
	lo := netip.MustParseAddr("127.0.0.1")
	s.SetIsolated(lo, []string{"allowed.example.org", "*.updates.example.net"})
	tests := []struct {
		name  string
		rcode int
	}{
		{"allowed.example.org", dns.RcodeSuccess},
		{"a.b.updates.example.net", dns.RcodeSuccess},
		{"ingest.cloud.example.com", dns.RcodeSuccess}, // override: reaches Gatehouse
		{"evil.example.org", dns.RcodeNameError},
		{"updates.example.net.evil.org", dns.RcodeNameError},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			if r := ask(t, s, network, tt.name, dns.TypeA, 0); r.Rcode != tt.rcode {
				t.Errorf("isolated %s %s: got %s, want %s", network, tt.name, dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
			}
		}
	}
	s.ClearIsolated(lo)
	if r := ask(t, s, "udp", "evil.example.org", dns.TypeA, 0); r.Rcode != dns.RcodeSuccess {
		t.Errorf("after ClearIsolated: got %s, want NOERROR", dns.RcodeToString[r.Rcode])
	}
}

func TestIsolationNeedsStrictMode(t *testing.T) {
	var hits atomic.Int64
	cfg := testConfig()
	cfg.RefuseUnknown = false
	cfg.Upstreams = []string{upstream(t, &hits)}
	s, _ := start(t, cfg)
	s.SetIsolated(netip.MustParseAddr("127.0.0.1"), nil)
	if r := ask(t, s, "udp", "evil.example.org", dns.TypeA, 0); r.Rcode != dns.RcodeSuccess {
		t.Errorf("strict_isolation off: got %s, want NOERROR", dns.RcodeToString[r.Rcode])
	}
}

func TestMalformedAndOddQueries(t *testing.T) {
	s, _ := start(t, testConfig())
	conn, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Garbage with a readable header: FORMERR.
	junk := []byte{0xbe, 0xef, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 'a'}
	if _, err := conn.Write(junk); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read FORMERR: %v", err)
	}
	if n != 12 || buf[0] != 0xbe || buf[3]&0x0f != dns.RcodeFormatError {
		t.Errorf("got % x, want a 12-byte FORMERR header", buf[:n])
	}
	// EDNS version 1: BADVERS.
	m := new(dns.Msg)
	m.SetQuestion("ingest.cloud.example.com.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeBadVers {
		t.Errorf("EDNS version 1: got %s, want BADVERS", dns.RcodeToString[r.Rcode])
	}
	// NOTIFY: not implemented.
	m = new(dns.Msg)
	m.SetNotify("cloud.example.com.")
	if r, _, err = c.Exchange(m, s.Addr().String()); err != nil || r.Rcode != dns.RcodeNotImplemented {
		t.Errorf("NOTIFY: got %v %v, want NOTIMP", r, err)
	}
	if got := testutil.ToFloat64(s.m.malformed); got != 1 {
		t.Errorf("malformed_total: got %v, want 1", got)
	}
}
