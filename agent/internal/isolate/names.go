package isolate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Resolver resolves a host name to its addresses and how long they may be
// cached (the smallest TTL of the answer).
type Resolver interface {
	Resolve(ctx context.Context, name string) ([]netip.Addr, time.Duration, error)
}

// Refresh bounds: a name is resolved again after its TTL, but not more
// often than MinTTL nor less often than MaxTTL; a failed lookup keeps the
// last addresses and is retried after RetryAfter.
const (
	MinTTL     = 30 * time.Second
	MaxTTL     = time.Hour
	RetryAfter = 30 * time.Second
)

// DNSResolver asks the name servers of a resolv.conf (the system resolver's
// servers: on a Gatehouse site, the relay's DNS) for A and AAAA records and
// returns their TTL, which net.Resolver hides.
type DNSResolver struct {
	ResolvConf string        // default /etc/resolv.conf
	Timeout    time.Duration // per query; default 2s
}

// Servers returns the name servers of the resolv.conf.
func Servers(resolvConf string) ([]netip.Addr, error) {
	if resolvConf == "" {
		resolvConf = "/etc/resolv.conf"
	}
	f, err := os.Open(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", resolvConf, err)
	}
	defer f.Close()
	var out []netip.Addr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		// Zone suffixes ("fe80::1%eth0") are kept by ParseAddr.
		if a, err := netip.ParseAddr(fields[1]); err == nil {
			out = append(out, a.Unmap())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", resolvConf, err)
	}
	return out, nil
}

// Resolve implements Resolver. IP literals resolve to themselves.
func (r DNSResolver) Resolve(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	if a, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{a.Unmap()}, MaxTTL, nil
	}
	servers, err := Servers(r.ResolvConf)
	if err != nil {
		return nil, 0, err
	}
	if len(servers) == 0 {
		return nil, 0, fmt.Errorf("resolve %s: no name servers in resolv.conf", name)
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	c := &dns.Client{Timeout: timeout}
	var addrs []netip.Addr
	ttl := MaxTTL
	var errs []error
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		answered := false
		for _, s := range servers {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(name), qtype)
			m.RecursionDesired = true
			in, _, err := c.ExchangeContext(ctx, m, net.JoinHostPort(s.String(), "53"))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
				errs = append(errs, fmt.Errorf("%s from %s", dns.RcodeToString[in.Rcode], s))
				continue
			}
			answered = true
			for _, rr := range in.Answer {
				var ip net.IP
				switch v := rr.(type) {
				case *dns.A:
					ip = v.A
				case *dns.AAAA:
					ip = v.AAAA
				default:
					continue // CNAME chain: the addresses follow in the answer
				}
				if a, ok := netip.AddrFromSlice(ip); ok {
					addrs = append(addrs, a.Unmap())
					ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
				}
			}
			break
		}
		if !answered {
			return nil, 0, fmt.Errorf("resolve %s: %w", name, errors.Join(errs...))
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs), ttl, nil
}

// nameEntry is one name's last resolution.
type nameEntry struct {
	addrs []netip.Addr
	next  time.Time // when to resolve again
}

// names caches resolved names and says when each is due.
type names struct {
	res     Resolver
	entries map[string]*nameEntry
}

func newNames(r Resolver) *names { return &names{res: r, entries: map[string]*nameEntry{}} }

// set makes the cache hold exactly these names; new names are due at once.
func (n *names) set(list []string) {
	keep := map[string]bool{}
	for _, name := range list {
		keep[name] = true
		if _, ok := n.entries[name]; !ok {
			n.entries[name] = &nameEntry{}
		}
	}
	for name := range n.entries {
		if !keep[name] {
			delete(n.entries, name)
		}
	}
}

// refresh resolves every name due at now. It reports whether any address
// set changed and the first error (the name keeps its old addresses).
func (n *names) refresh(ctx context.Context, now time.Time) (changed bool, err error) {
	for name, e := range n.entries {
		if now.Before(e.next) {
			continue
		}
		addrs, ttl, rerr := n.res.Resolve(ctx, name)
		if rerr != nil {
			e.next = now.Add(RetryAfter)
			if err == nil {
				err = fmt.Errorf("resolve allowed name %s: %w", name, rerr)
			}
			continue
		}
		e.next = now.Add(min(max(ttl, MinTTL), MaxTTL))
		slices.SortFunc(addrs, netip.Addr.Compare)
		addrs = slices.Compact(addrs)
		if !slices.Equal(addrs, e.addrs) {
			e.addrs, changed = addrs, true
		}
	}
	return changed, err
}

// due returns when the next name is due; ok is false with no names.
func (n *names) due() (t time.Time, ok bool) {
	for _, e := range n.entries {
		if !ok || e.next.Before(t) {
			t, ok = e.next, true
		}
	}
	return t, ok
}

// addrs returns every resolved address.
func (n *names) addrs() []netip.Addr {
	var out []netip.Addr
	for _, e := range n.entries {
		out = append(out, e.addrs...)
	}
	return out
}

// resolved returns a copy of name -> addresses.
func (n *names) resolved() map[string][]netip.Addr {
	out := make(map[string][]netip.Addr, len(n.entries))
	for name, e := range n.entries {
		out[name] = slices.Clone(e.addrs)
	}
	return out
}
