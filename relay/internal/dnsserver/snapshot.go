package dnsserver

import (
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// Answer sources, the label values of answers_total.
const (
	srcOverride = iota
	srcService
	srcUpstream
	srcCache
	srcIsolation
	numSources
)

var sourceNames = [numSources]string{"override", "service", "upstream", "cache", "isolation"}

// snapshot is the immutable set of names the relay answers itself, with a
// precomputed wire-format response per (name, type). A change builds a new
// snapshot and swaps the pointer; the packet path reads it without a lock.
type snapshot struct {
	// names is keyed by the lower-case wire-format owner name.
	names map[string]*nameEntry
}

type nameEntry struct {
	source int
	types  []typedAnswer
	// other answers every type the name has no records of: the CNAME
	// chain when the name is an alias, NODATA otherwise.
	other *answer
}

type typedAnswer struct {
	qtype uint16
	a     *answer
}

// answer is one response, precomputed.
type answer struct {
	// msg is the response template for the slow path (Copy before use).
	msg *dns.Msg
	// wire is msg packed with compression; its question name is the
	// lower-case owner and is overwritten by the query's own bytes, which
	// have the same length. Flags and ID are patched per query.
	wire []byte
	// noExtra is wire without the additional section, or nil when there
	// is none: used when the full answer does not fit a UDP response.
	noExtra []byte
}

func (e *nameEntry) lookup(qtype uint16) *answer {
	for i := range e.types {
		if e.types[i].qtype == qtype {
			return e.types[i].a
		}
	}
	return e.other
}

// wireKey is the lower-case wire form of a presentation-format name.
func wireKey(name string) (string, error) {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(strings.ToLower(dns.Fqdn(name)), buf, 0, nil, false)
	if err != nil {
		return "", fmt.Errorf("pack name %q: %w", name, err)
	}
	return string(buf[:n]), nil
}

// buildSnapshot makes the snapshot from override and service records.
// Overrides win over service records of the same owner name.
func buildSnapshot(overrides, service []dns.RR) (*snapshot, error) {
	owners := map[string]map[uint16][]dns.RR{}
	source := map[string]int{}
	add := func(rrs []dns.RR, src int) {
		for _, rr := range rrs {
			h := rr.Header()
			if s, ok := source[h.Name]; ok && s != src {
				continue
			}
			source[h.Name] = src
			if owners[h.Name] == nil {
				owners[h.Name] = map[uint16][]dns.RR{}
			}
			owners[h.Name][h.Rrtype] = appendUnique(owners[h.Name][h.Rrtype], rr)
		}
	}
	add(overrides, srcOverride)
	// Service owners that an override already claims are skipped whole.
	var svc []dns.RR
	for _, rr := range service {
		if s, ok := source[rr.Header().Name]; ok && s == srcOverride {
			continue
		}
		svc = append(svc, rr)
	}
	add(svc, srcService)

	snap := &snapshot{names: make(map[string]*nameEntry, len(owners))}
	for owner, types := range owners {
		key, err := wireKey(owner)
		if err != nil {
			return nil, err
		}
		e := &nameEntry{source: source[owner]}
		if cn := types[dns.TypeCNAME]; len(cn) > 0 {
			// An alias has no other data (RFC 1034 3.6.2): keep only the
			// first CNAME; every type but CNAME follows it.
			e.types = append(e.types, typedAnswer{dns.TypeCNAME, mustAnswer(owner, dns.TypeCNAME, cn[:1], nil)})
			for _, t := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT} {
				ans, extra := chase(owners, cn[0], t)
				e.types = append(e.types, typedAnswer{t, mustAnswer(owner, t, ans, extra)})
			}
			e.other = mustAnswer(owner, dns.TypeA, cn[:1], nil)
		} else {
			for t, rrs := range types {
				e.types = append(e.types, typedAnswer{t, mustAnswer(owner, t, rrs, glue(owners, rrs))})
			}
			e.types = append(e.types, typedAnswer{dns.TypeANY, mustAnswer(owner, dns.TypeANY, anyAnswer(owner, types), nil)})
			e.other = mustAnswer(owner, dns.TypeA, nil, nil)
		}
		snap.names[key] = e
	}
	return snap, nil
}

// anyAnswer is the answer to ANY for a name of ours (RFC 8482): its A and
// AAAA records, what a client asking ANY almost always wants; a name with
// neither gets the synthesized HINFO "RFC8482" of RFC 8482 4.2, so that
// ANY never looks like a name without data. An alias answers ANY with its
// CNAME (nameEntry.other).
func anyAnswer(owner string, types map[uint16][]dns.RR) []dns.RR {
	out := append(append([]dns.RR(nil), types[dns.TypeA]...), types[dns.TypeAAAA]...)
	if len(out) > 0 {
		return out
	}
	return []dns.RR{&dns.HINFO{
		Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: ttlSeconds(DefaultTTL)},
		Cpu: "RFC8482",
	}}
}

func appendUnique(rrs []dns.RR, rr dns.RR) []dns.RR {
	for _, x := range rrs {
		if dns.IsDuplicate(x, rr) {
			return rrs
		}
	}
	return append(rrs, rr)
}

// chase follows a CNAME chain through the local names, at most 8 links.
func chase(owners map[string]map[uint16][]dns.RR, cn dns.RR, qtype uint16) (ans, extra []dns.RR) {
	ans = []dns.RR{cn}
	seen := map[string]bool{cn.Header().Name: true}
	target := cn.(*dns.CNAME).Target
	for range 8 {
		types, ok := owners[target]
		if !ok || seen[target] {
			break
		}
		seen[target] = true
		if next := types[dns.TypeCNAME]; len(next) > 0 {
			ans = append(ans, next[0])
			target = next[0].(*dns.CNAME).Target
			continue
		}
		ans = append(ans, types[qtype]...)
		return ans, glue(owners, types[qtype])
	}
	return ans, nil
}

// glue is the local A/AAAA of SRV targets, for the additional section.
func glue(owners map[string]map[uint16][]dns.RR, rrs []dns.RR) []dns.RR {
	var out []dns.RR
	for _, rr := range rrs {
		srv, ok := rr.(*dns.SRV)
		if !ok {
			continue
		}
		types := owners[srv.Target]
		for _, a := range append(append([]dns.RR(nil), types[dns.TypeA]...), types[dns.TypeAAAA]...) {
			out = appendUnique(out, a)
		}
	}
	return out
}

// mustAnswer packs a response. Packing records that were built from
// validated values cannot fail; a failure is a bug.
func mustAnswer(owner string, qtype uint16, ans, extra []dns.RR) *answer {
	m := new(dns.Msg)
	m.SetQuestion(owner, qtype)
	m.Id = 0
	m.Response = true
	m.Authoritative = true
	m.RecursionAvailable = true
	m.Compress = true
	m.Answer = ans
	m.Extra = extra
	wire, err := m.Pack()
	if err != nil {
		panic(fmt.Sprintf("dnsserver: pack %s/%s: %v", owner, dns.TypeToString[qtype], err))
	}
	a := &answer{msg: m, wire: wire}
	if len(extra) > 0 {
		m2 := m.Copy()
		m2.Extra = nil
		if a.noExtra, err = m2.Pack(); err != nil {
			panic(fmt.Sprintf("dnsserver: pack %s: %v", owner, err))
		}
	}
	return a
}
