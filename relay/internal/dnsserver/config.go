package dnsserver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Config is the relay's `dns:` section.
type Config struct {
	// Listen is the UDP and TCP address (same port for both), e.g. ":53".
	Listen string `yaml:"listen"`
	// Overrides are the site's local records; the cluster replaces them at
	// run time through SetOverrides.
	Overrides []Record `yaml:"overrides"`
	// Upstreams are tried in order ("host:port", port 53 when omitted).
	Upstreams []string `yaml:"upstreams"`
	// AllowNetworks are the client prefixes answered; everyone else gets
	// REFUSED. Never empty; no IPv4 prefix shorter than MinIPv4AllowBits,
	// no IPv6 one shorter than MinIPv6AllowBits outside the private ranges.
	AllowNetworks []string `yaml:"allow_networks"`
	// RateLimit bounds queries per client (/32 for IPv4, /64 for IPv6).
	RateLimit RateLimit `yaml:"rate_limit"`
	// CacheSize is the number of upstream answers kept (LRU); 0 disables.
	CacheSize int `yaml:"cache_size"`
	// UpstreamTimeout bounds one exchange with one upstream.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	// RefuseUnknown answers REFUSED for every name that is not an override
	// or the service name, instead of forwarding it to the upstreams.
	RefuseUnknown bool `yaml:"refuse_unknown"`
	// StrictIsolation makes isolated hosts (SetIsolated) resolve only their
	// allow-list plus the overrides and service name; NXDOMAIN otherwise.
	StrictIsolation bool `yaml:"strict_isolation"`
	// ServiceName answers A/AAAA/SRV with the site's healthy relays.
	ServiceName string `yaml:"service_name"`
	// ServiceTTL is the TTL of the service name's records: short, so a
	// dead relay leaves clients' caches within seconds.
	ServiceTTL time.Duration `yaml:"service_ttl"`
	// Workers is the number of UDP sockets (SO_REUSEPORT, one reader each);
	// 0 means one per CPU.
	Workers int `yaml:"workers"`
}

// RateLimit is a token bucket per client.
type RateLimit struct {
	// QPS is the sustained rate per client; 0 disables rate limiting.
	QPS float64 `yaml:"qps"`
	// Burst is the bucket size.
	Burst int `yaml:"burst"`
	// MaxClients bounds the buckets kept; the oldest are evicted first.
	MaxClients int `yaml:"max_clients"`
}

// Default is the configuration used for keys the file leaves out.
func Default() Config {
	return Config{
		Listen: ":53",
		AllowNetworks: []string{
			"127.0.0.0/8", "::1/128",
			"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
			"100.64.0.0/10", "fc00::/7", "fe80::/10",
		},
		RateLimit:       RateLimit{QPS: 200, Burst: 400, MaxClients: 65536},
		CacheSize:       10000,
		UpstreamTimeout: 2 * time.Second,
		ServiceName:     "relay.gatehouse.internal",
		ServiceTTL:      5 * time.Second,
	}
}

// Validate checks the configuration; it also parses every override.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("dns.listen %q: %w", c.Listen, err))
	}
	if len(c.AllowNetworks) == 0 {
		errs = append(errs, errors.New("dns.allow_networks: empty (the relay must never be an open resolver)"))
	}
	if _, err := parsePrefixes(c.AllowNetworks); err != nil {
		errs = append(errs, err)
	}
	for i, u := range c.Upstreams {
		if _, err := upstreamAddr(u); err != nil {
			errs = append(errs, fmt.Errorf("dns.upstreams[%d]: %w", i, err))
		}
	}
	if !c.RefuseUnknown && len(c.Upstreams) == 0 {
		errs = append(errs, errors.New("dns.upstreams: empty while refuse_unknown is false (set upstreams or refuse_unknown: true)"))
	}
	if c.RateLimit.QPS < 0 || c.RateLimit.Burst < 0 || c.RateLimit.MaxClients < 0 {
		errs = append(errs, errors.New("dns.rate_limit: negative value"))
	}
	if c.RateLimit.QPS > 0 && c.RateLimit.Burst < 1 {
		errs = append(errs, errors.New("dns.rate_limit.burst: must be at least 1 when qps is set"))
	}
	if c.CacheSize < 0 {
		errs = append(errs, fmt.Errorf("dns.cache_size %d: negative", c.CacheSize))
	}
	if c.UpstreamTimeout <= 0 {
		errs = append(errs, fmt.Errorf("dns.upstream_timeout %s: must be positive", c.UpstreamTimeout))
	}
	if c.ServiceTTL < 0 {
		errs = append(errs, fmt.Errorf("dns.service_ttl %s: negative", c.ServiceTTL))
	}
	if c.Workers < 0 {
		errs = append(errs, fmt.Errorf("dns.workers %d: negative", c.Workers))
	}
	if c.ServiceName != "" {
		if _, ok := dns.IsDomainName(c.ServiceName); !ok {
			errs = append(errs, fmt.Errorf("dns.service_name %q: not a domain name", c.ServiceName))
		}
	}
	for i, r := range c.Overrides {
		if _, err := r.rrs(); err != nil {
			errs = append(errs, fmt.Errorf("dns.overrides[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

func parsePrefixes(nets []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(nets))
	for _, s := range nets {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			a, aerr := netip.ParseAddr(strings.TrimSpace(s))
			if aerr != nil {
				return nil, fmt.Errorf("dns.allow_networks %q: %w", s, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err := checkAllowPrefix(p); err != nil {
			return nil, fmt.Errorf("dns.allow_networks %q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// The shortest prefixes dns.allow_networks takes. Two /1s cover the whole
// internet as well as a /0 does, so a check for /0 alone is no check: any
// prefix wider than an IPv4 /8 or an IPv6 /32 (a large ISP's allocation)
// is refused. IPv6 ULA (fc00::/7) and link-local (fe80::/10) are not
// routed on the internet and may be written whole.
const (
	MinIPv4AllowBits = 8
	MinIPv6AllowBits = 32
)

var ipv6Private = []netip.Prefix{netip.MustParsePrefix("fc00::/7"), netip.MustParsePrefix("fe80::/10")}

func checkAllowPrefix(p netip.Prefix) error {
	a := p.Addr()
	switch {
	case a.Is4In6():
		// Clients are matched by their plain IPv4 address: a mapped prefix
		// would never match and only hide what was meant.
		return fmt.Errorf("IPv4-mapped IPv6 prefix: write it as IPv4 (%s/%d)", a.Unmap(), max(p.Bits()-96, 0))
	case a.Is4() && p.Bits() < MinIPv4AllowBits:
		return fmt.Errorf("an IPv4 prefix shorter than /%d would make the relay an open resolver for much of the internet: list the site's own networks", MinIPv4AllowBits)
	case a.Is6() && p.Bits() < MinIPv6AllowBits:
		for _, priv := range ipv6Private {
			if priv.Bits() <= p.Bits() && priv.Contains(a) {
				return nil
			}
		}
		return fmt.Errorf("an IPv6 prefix shorter than /%d outside fc00::/7 and fe80::/10 would make the relay an open resolver for much of the internet: list the site's own networks", MinIPv6AllowBits)
	}
	return nil
}

func upstreamAddr(u string) (string, error) {
	if u == "" {
		return "", errors.New("empty upstream")
	}
	if _, err := netip.ParseAddr(u); err == nil {
		return net.JoinHostPort(u, "53"), nil
	}
	host, port, err := net.SplitHostPort(u)
	if err != nil {
		return "", fmt.Errorf("upstream %q: %w", u, err)
	}
	if host == "" || port == "" {
		return "", fmt.Errorf("upstream %q: host and port required", u)
	}
	return u, nil
}
