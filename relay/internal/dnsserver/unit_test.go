package dnsserver

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

func TestLimiterRefillsAndIsPerClient(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Unix(1000, 0))
	l := newLimiter(RateLimit{QPS: 10, Burst: 3}, clock)
	a := netip.MustParseAddr("10.0.0.1")
	b := netip.MustParseAddr("10.0.0.2")
	v6a := netip.MustParseAddr("fd00::1")
	v6b := netip.MustParseAddr("fd00::2") // same /64
	steps := []struct {
		addr    netip.Addr
		advance time.Duration
		want    bool
	}{
		{a, 0, true}, {a, 0, true}, {a, 0, true}, {a, 0, false},
		{b, 0, true},
		{a, 100 * time.Millisecond, true}, {a, 0, false},
		{v6a, 0, true}, {v6b, 0, true}, {v6a, 0, true}, {v6b, 0, false},
		{a, time.Hour, true}, {a, 0, true}, {a, 0, true}, {a, 0, false},
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		if got := l.allow(st.addr); got != st.want {
			t.Errorf("step %d %s: got %v, want %v", i, st.addr, got, st.want)
		}
	}
}

func TestLimiterBounded(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Unix(1000, 0))
	l := newLimiter(RateLimit{QPS: 1, Burst: 1, MaxClients: 128}, clock)
	for i := range 10000 {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	total := 0
	for i := range l.shards {
		total += len(l.shards[i].m)
	}
	if total > 128+limiterShards {
		t.Errorf("buckets: got %d, want <= %d", total, 128+limiterShards)
	}
}

func TestCacheTTLAndLRU(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Unix(1000, 0))
	c := newCache(2, clock)
	a := func(name string, ttl uint32) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		m.Response = true
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.IPv4(192, 0, 2, 1)}}
		return m
	}
	k := func(name string) string {
		return cacheKey(dns.Question{Name: name, Qtype: dns.TypeA, Qclass: dns.ClassINET}, false, false)
	}
	c.put(k("a."), a("a.", 60))
	clock.Advance(20 * time.Second)
	if m := c.get(k("A.")); m == nil || m.Answer[0].Header().Ttl != 40 {
		t.Fatalf("after 20s: got %v, want TTL 40", m)
	}
	clock.Advance(40 * time.Second)
	if m := c.get(k("a.")); m != nil {
		t.Errorf("after 60s: got %v, want expired", m)
	}
	c.put(k("b."), a("b.", 60))
	c.put(k("c."), a("c.", 60))
	c.get(k("b."))
	c.put(k("d."), a("d.", 60)) // evicts c, the least recently used
	if c.get(k("c.")) != nil || c.get(k("b.")) == nil || c.get(k("d.")) == nil {
		t.Errorf("LRU: got c kept or b/d lost")
	}
	// Negative: SOA min caps; no SOA means not cached; SERVFAIL never.
	nx := new(dns.Msg)
	nx.SetQuestion("nx.", dns.TypeA)
	nx.Rcode = dns.RcodeNameError
	if got := cacheTTL(nx); got != 0 {
		t.Errorf("NXDOMAIN without SOA: got ttl %s, want 0", got)
	}
	nx.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3600}, Minttl: 900}}
	if got := cacheTTL(nx); got != maxNegativeTTL {
		t.Errorf("NXDOMAIN with SOA min 900: got %s, want %s", got, maxNegativeTTL)
	}
	sf := a("s.", 60)
	sf.Rcode = dns.RcodeServerFailure
	if got := cacheTTL(sf); got != 0 {
		t.Errorf("SERVFAIL: got ttl %s, want 0", got)
	}
	if got := cacheTTL(a("x.", 999999)); got != maxCacheTTL {
		t.Errorf("huge TTL: got %s, want %s", got, maxCacheTTL)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Default()
	ok.Upstreams = []string{"192.0.2.53", "[2001:db8::53]:53"}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"default with upstreams", func(c *Config) {}, ""},
		{"no upstreams, forwarding", func(c *Config) { c.Upstreams = nil }, "upstreams: empty"},
		{"no upstreams, refuse", func(c *Config) { c.Upstreams = nil; c.RefuseUnknown = true }, ""},
		{"open resolver", func(c *Config) { c.AllowNetworks = []string{"0.0.0.0/0"} }, "open resolver"},
		{"open resolver in two halves", func(c *Config) { c.AllowNetworks = []string{"0.0.0.0/1", "128.0.0.0/1"} }, `"0.0.0.0/1": an IPv4 prefix shorter than /8`},
		{"ipv4 /7", func(c *Config) { c.AllowNetworks = []string{"10.0.0.0/7"} }, "shorter than /8"},
		{"ipv4 /8", func(c *Config) { c.AllowNetworks = []string{"10.0.0.0/8"} }, ""},
		{"ipv6 open in halves", func(c *Config) { c.AllowNetworks = []string{"::/1", "8000::/1"} }, "IPv6 prefix shorter than /32"},
		{"ipv6 global /3", func(c *Config) { c.AllowNetworks = []string{"2000::/3"} }, "IPv6 prefix shorter than /32"},
		{"ipv6 /32", func(c *Config) { c.AllowNetworks = []string{"2001:db8::/32"} }, ""},
		{"ipv6 ula and link-local whole", func(c *Config) { c.AllowNetworks = []string{"fc00::/7", "fe80::/10", "fd00::/8"} }, ""},
		{"ipv6 wider than ula", func(c *Config) { c.AllowNetworks = []string{"fc00::/6"} }, "IPv6 prefix shorter than /32"},
		{"mapped ipv4", func(c *Config) { c.AllowNetworks = []string{"::ffff:10.0.0.0/104"} }, "write it as IPv4 (10.0.0.0/8)"},
		{"no networks", func(c *Config) { c.AllowNetworks = nil }, "allow_networks: empty"},
		{"bare address network", func(c *Config) { c.AllowNetworks = []string{"10.1.2.3"} }, ""},
		{"bad listen", func(c *Config) { c.Listen = "53" }, "dns.listen"},
		{"bad upstream", func(c *Config) { c.Upstreams = []string{"host-without-port"} }, "upstreams[0]"},
		{"bad override", func(c *Config) { c.Overrides = []Record{{Name: "x.example", Type: "A", Value: "::1"}} }, "overrides[0]"},
		{"bad type", func(c *Config) { c.Overrides = []Record{{Name: "x.example", Type: "MX", Value: "10 a."}} }, "not supported"},
		{"bad srv", func(c *Config) { c.Overrides = []Record{{Name: "x.example", Type: "SRV", Value: "10 a."}} }, "priority weight port target"},
		{"burst zero", func(c *Config) { c.RateLimit.Burst = 0 }, "burst"},
		{"timeout zero", func(c *Config) { c.UpstreamTimeout = 0 }, "upstream_timeout"},
	}
	for _, tt := range tests {
		c := ok
		tt.mod(&c)
		err := c.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: got %v, want nil", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: got %v, want error containing %q", tt.name, err, tt.want)
		}
	}
}
