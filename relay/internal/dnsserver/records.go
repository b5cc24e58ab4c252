package dnsserver

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DefaultTTL is the TTL of an override that gives none.
const DefaultTTL = 60 * time.Second

// Record is one override: the cluster's replicated DNS state and the
// config file's `overrides:` both use it.
type Record struct {
	// Name is the owner name, e.g. "ingest.cloud.example.com".
	Name string `yaml:"name"`
	// Type is A, AAAA, CNAME, SRV or TXT.
	Type string `yaml:"type"`
	// TTL defaults to DefaultTTL when zero.
	TTL time.Duration `yaml:"ttl"`
	// Value in zone-file terms: an address for A/AAAA, a name for CNAME,
	// "priority weight port target" for SRV, the text for TXT (split into
	// 255-byte strings as needed).
	Value string `yaml:"value"`
}

// Relay is one healthy relay of the site, served under the service name.
type Relay struct {
	// Name is the relay's node name; its own records are
	// "<name>.<service name>" unless Name is already fully qualified
	// (ends with a dot).
	Name string
	IPs  []netip.Addr
	// Port is the agents' port (SRV); 0 means 443.
	Port uint16
}

func ttlSeconds(d time.Duration) uint32 {
	if d == 0 {
		d = DefaultTTL
	}
	s := d / time.Second
	if s > 1<<31-1 {
		s = 1<<31 - 1
	}
	return uint32(s)
}

// rrs turns the record into resource records.
func (r Record) rrs() (dns.RR, error) {
	name := strings.ToLower(dns.Fqdn(strings.TrimSpace(r.Name)))
	if _, ok := dns.IsDomainName(name); !ok || name == "." {
		return nil, fmt.Errorf("name %q: not a domain name", r.Name)
	}
	if r.TTL < 0 {
		return nil, fmt.Errorf("%s ttl %s: negative", r.Name, r.TTL)
	}
	t := strings.ToUpper(strings.TrimSpace(r.Type))
	hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: ttlSeconds(r.TTL)}
	v := strings.TrimSpace(r.Value)
	switch t {
	case "A", "AAAA":
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("%s %s %q: %w", r.Name, t, r.Value, err)
		}
		if t == "A" {
			if !a.Unmap().Is4() {
				return nil, fmt.Errorf("%s A %q: not an IPv4 address", r.Name, r.Value)
			}
			hdr.Rrtype = dns.TypeA
			b := a.Unmap().As4()
			return &dns.A{Hdr: hdr, A: b[:]}, nil
		}
		if !a.Is6() || a.Is4In6() {
			return nil, fmt.Errorf("%s AAAA %q: not an IPv6 address", r.Name, r.Value)
		}
		hdr.Rrtype = dns.TypeAAAA
		b := a.As16()
		return &dns.AAAA{Hdr: hdr, AAAA: b[:]}, nil
	case "CNAME":
		target := strings.ToLower(dns.Fqdn(v))
		if _, ok := dns.IsDomainName(target); !ok || v == "" {
			return nil, fmt.Errorf("%s CNAME %q: not a domain name", r.Name, r.Value)
		}
		hdr.Rrtype = dns.TypeCNAME
		return &dns.CNAME{Hdr: hdr, Target: target}, nil
	case "SRV":
		f := strings.Fields(v)
		if len(f) != 4 {
			return nil, fmt.Errorf("%s SRV %q: want \"priority weight port target\"", r.Name, r.Value)
		}
		var n [3]uint16
		for i := range 3 {
			x, err := strconv.ParseUint(f[i], 10, 16)
			if err != nil {
				return nil, fmt.Errorf("%s SRV %q: %w", r.Name, r.Value, err)
			}
			n[i] = uint16(x)
		}
		target := strings.ToLower(dns.Fqdn(f[3]))
		if _, ok := dns.IsDomainName(target); !ok {
			return nil, fmt.Errorf("%s SRV %q: bad target", r.Name, r.Value)
		}
		hdr.Rrtype = dns.TypeSRV
		return &dns.SRV{Hdr: hdr, Priority: n[0], Weight: n[1], Port: n[2], Target: target}, nil
	case "TXT":
		if len(r.Value) > 4000 {
			return nil, fmt.Errorf("%s TXT: %d bytes, at most 4000", r.Name, len(r.Value))
		}
		hdr.Rrtype = dns.TypeTXT
		var parts []string
		s := r.Value
		for len(s) > 255 {
			parts = append(parts, escapeTXT(s[:255]))
			s = s[255:]
		}
		parts = append(parts, escapeTXT(s))
		return &dns.TXT{Hdr: hdr, Txt: parts}, nil
	case "":
		return nil, fmt.Errorf("%s: type missing", r.Name)
	default:
		return nil, fmt.Errorf("%s: type %q not supported (A, AAAA, CNAME, SRV, TXT)", r.Name, r.Type)
	}
}

// escapeTXT makes s survive miekg/dns's presentation-format packing of
// TXT strings (backslash and quote are escapes there).
func escapeTXT(s string) string {
	if !strings.ContainsAny(s, `\"`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' || s[i] == '"' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ParseRecords validates records the way SetOverrides does, for callers
// (config, cluster apply) that want errors before the swap.
func ParseRecords(recs []Record) error {
	var errs []error
	for i, r := range recs {
		if _, err := r.rrs(); err != nil {
			errs = append(errs, fmt.Errorf("record %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// serviceRRs builds the service name's records from the healthy relays.
func serviceRRs(service string, ttl uint32, relays []Relay) []dns.RR {
	if service == "" {
		return nil
	}
	service = strings.ToLower(dns.Fqdn(service))
	var out []dns.RR
	srvNames := []string{service, "_gatehouse._udp." + service, "_gatehouse._tcp." + service}
	for _, rl := range relays {
		host := strings.ToLower(rl.Name)
		if !strings.HasSuffix(host, ".") {
			host = host + "." + service
		}
		if _, ok := dns.IsDomainName(host); !ok || rl.Name == "" {
			continue
		}
		port := rl.Port
		if port == 0 {
			port = 443
		}
		var any bool
		for _, ip := range rl.IPs {
			ip = ip.Unmap()
			if !ip.IsValid() {
				continue
			}
			any = true
			for _, owner := range []string{service, host} {
				if ip.Is4() {
					b := ip.As4()
					out = append(out, &dns.A{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: b[:]})
				} else {
					b := ip.As16()
					out = append(out, &dns.AAAA{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: b[:]})
				}
			}
		}
		if !any {
			continue
		}
		for _, owner := range srvNames {
			out = append(out, &dns.SRV{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
				Priority: 10, Weight: 10, Port: port, Target: host})
		}
	}
	return out
}
