package store

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/miekg/dns"
)

// Keys:
//   dns/<tenant>/<site>   DNSOverrides (the site's whole set)

// DNS record types an override may have.
var dnsTypes = map[string]uint16{
	"A": dns.TypeA, "AAAA": dns.TypeAAAA, "CNAME": dns.TypeCNAME, "SRV": dns.TypeSRV, "TXT": dns.TypeTXT,
}

// Limits of a site's DNS overrides.
const (
	MaxDNSRecords   = 2000
	MaxDNSValues    = 64
	DefaultDNSTTL   = 60
	MaxDNSTTL       = 86400
	maxTXTValueLen  = 255
	maxDNSValueText = 1024
)

// SetDNSOverrides replaces a site's DNS overrides after validating and
// canonicalising every record (see CanonicalDNSRecords).
func (s *Store) SetDNSOverrides(tenant, site string, recs []DNSRecord) (DNSOverrides, error) {
	recs, err := CanonicalDNSRecords(recs)
	if err != nil {
		return DNSOverrides{}, err
	}
	o := DNSOverrides{TenantID: tenant, SiteID: site, Records: recs, UpdatedAt: s.now().UTC()}
	err = s.update(func(txn *badger.Txn) error {
		if err := siteExists(txn, tenant, site); err != nil {
			return err
		}
		if err := setJSON(txn, k("dns", tenant, site), o); err != nil {
			return err
		}
		return bumpSite(txn, tenant, site)
	})
	if err != nil {
		return DNSOverrides{}, fmt.Errorf("set dns overrides: %w", err)
	}
	s.notify()
	return o, nil
}

// GetDNSOverrides returns a site's DNS overrides (empty when never set).
func (s *Store) GetDNSOverrides(tenant, site string) (DNSOverrides, error) {
	o := DNSOverrides{TenantID: tenant, SiteID: site}
	err := s.view(func(txn *badger.Txn) error {
		if err := siteExists(txn, tenant, site); err != nil {
			return err
		}
		err := getJSON(txn, k("dns", tenant, site), &o)
		if err == ErrNotFound {
			err = nil
		}
		return err
	})
	if err != nil {
		return DNSOverrides{}, fmt.Errorf("dns overrides: %w", err)
	}
	if o.Records == nil {
		o.Records = []DNSRecord{}
	}
	return o, nil
}

func getDNS(txn *badger.Txn, tenant, site string) ([]DNSRecord, error) {
	var o DNSOverrides
	err := getJSON(txn, k("dns", tenant, site), &o)
	if err == ErrNotFound {
		return nil, nil
	}
	return o.Records, err
}

func siteExists(txn *badger.Txn, tenant, site string) error {
	if err := tenantExists(txn, tenant); err != nil {
		return err
	}
	ok, err := exists(txn, k("s", tenant, site))
	if err == nil && !ok {
		err = fmt.Errorf("site %q: %w", site, ErrNotFound)
	}
	return err
}

// CanonicalDNSRecords validates a set of overrides and returns it in
// canonical form, sorted by name and type: names lower case and fully
// qualified, types upper case, values parsed with miekg/dns and printed
// back (so "1.2.3.4 ; x" is refused or normalised, never stored raw), TTL 0
// meaning DefaultDNSTTL. A (name, type) pair appears once; a CNAME has
// exactly one value and no other record at its name.
func CanonicalDNSRecords(in []DNSRecord) ([]DNSRecord, error) {
	if len(in) > MaxDNSRecords {
		return nil, fmt.Errorf("%w: %d dns records, at most %d", ErrInvalid, len(in), MaxDNSRecords)
	}
	out := make([]DNSRecord, 0, len(in))
	seen := make(map[string]string) // "name type" -> "", name -> "CNAME" marker
	for _, r := range in {
		c, err := canonicalRecord(r)
		if err != nil {
			return nil, err
		}
		key := c.Name + " " + c.Type
		if _, dup := seen[key]; dup {
			return nil, fmt.Errorf("%w: dns record %s %s given twice", ErrInvalid, c.Name, c.Type)
		}
		seen[key] = ""
		out = append(out, c)
	}
	names := make(map[string][]string)
	for _, r := range out {
		names[r.Name] = append(names[r.Name], r.Type)
	}
	for n, types := range names {
		if slices.Contains(types, "CNAME") && len(types) > 1 {
			return nil, fmt.Errorf("%w: dns name %s has a CNAME and other records", ErrInvalid, n)
		}
	}
	slices.SortFunc(out, func(a, b DNSRecord) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Type, b.Type)
	})
	return out, nil
}

func canonicalRecord(r DNSRecord) (DNSRecord, error) {
	name, err := canonicalName(r.Name)
	if err != nil {
		return DNSRecord{}, err
	}
	typ := strings.ToUpper(strings.TrimSpace(r.Type))
	rrtype, ok := dnsTypes[typ]
	if !ok {
		return DNSRecord{}, fmt.Errorf("%w: dns record %s: type %q: want A, AAAA, CNAME, SRV or TXT", ErrInvalid, name, r.Type)
	}
	ttl := r.TTL
	if ttl == 0 {
		ttl = DefaultDNSTTL
	}
	if ttl > MaxDNSTTL {
		return DNSRecord{}, fmt.Errorf("%w: dns record %s %s: ttl %d over %d", ErrInvalid, name, typ, ttl, MaxDNSTTL)
	}
	if len(r.Values) == 0 || len(r.Values) > MaxDNSValues {
		return DNSRecord{}, fmt.Errorf("%w: dns record %s %s: want 1..%d values", ErrInvalid, name, typ, MaxDNSValues)
	}
	if rrtype == dns.TypeCNAME && len(r.Values) != 1 {
		return DNSRecord{}, fmt.Errorf("%w: dns record %s CNAME: want exactly one value", ErrInvalid, name)
	}
	vals := make([]string, 0, len(r.Values))
	for _, v := range r.Values {
		cv, err := canonicalValue(name, rrtype, v)
		if err != nil {
			return DNSRecord{}, fmt.Errorf("%w: dns record %s %s: value %q: %v", ErrInvalid, name, typ, v, err)
		}
		if !slices.Contains(vals, cv) {
			vals = append(vals, cv)
		}
	}
	return DNSRecord{Name: name, Type: typ, Values: vals, TTL: ttl}, nil
}

func canonicalValue(name string, rrtype uint16, v string) (string, error) {
	if len(v) > maxDNSValueText {
		return "", fmt.Errorf("longer than %d bytes", maxDNSValueText)
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return "", fmt.Errorf("control characters")
	}
	if rrtype == dns.TypeTXT {
		// TXT values are taken as raw text (one character-string each).
		if len(v) > maxTXTValueLen {
			return "", fmt.Errorf("longer than %d bytes", maxTXTValueLen)
		}
		return v, nil
	}
	if strings.ContainsAny(v, ";\"()$") {
		return "", fmt.Errorf("unexpected character")
	}
	rr, err := dns.NewRR(fmt.Sprintf("%s 60 IN %s %s", name, dns.TypeToString[rrtype], v))
	if err != nil {
		return "", err
	}
	if rr == nil || rr.Header().Rrtype != rrtype {
		return "", fmt.Errorf("not a %s value", dns.TypeToString[rrtype])
	}
	switch x := rr.(type) {
	case *dns.A:
		if x.A.To4() == nil {
			return "", fmt.Errorf("not an IPv4 address")
		}
		return x.A.String(), nil
	case *dns.AAAA:
		if x.AAAA.To4() != nil {
			return "", fmt.Errorf("not an IPv6 address")
		}
		return x.AAAA.String(), nil
	case *dns.CNAME:
		return canonicalName(x.Target)
	case *dns.SRV:
		t, err := canonicalName(x.Target)
		if err != nil && x.Target != "." {
			return "", err
		}
		if x.Target == "." {
			t = "."
		}
		return fmt.Sprintf("%d %d %d %s", x.Priority, x.Weight, x.Port, t), nil
	}
	return "", fmt.Errorf("unsupported type")
}
