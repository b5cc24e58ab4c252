// Package firewall renders the appliance's nftables ruleset from its
// settings: inbound only the agent port (UDP and TCP), DNS when the relay
// serves it, the cluster port from the other members and the admin port
// from management networks; outbound only to the cloud, the proxy, the
// update server, DNS and NTP servers and the cluster members.
package firewall

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/appliance-image/internal/settings"
)

// Table is the nftables table the appliance owns (nothing else is loaded).
const Table = "gatehouse"

// Resolver finds a host name's addresses (an IP literal resolves to itself).
type Resolver func(ctx context.Context, host string) ([]netip.Addr, error)

// SystemResolver resolves through the appliance's configured DNS servers.
func SystemResolver(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// dest is one outbound destination the relay or the appliance may reach.
type dest struct {
	what  string // for the rule's comment
	proto string // tcp or udp
	addr  netip.Addr
	port  uint16
}

// Plan is the rendered ruleset and the host names that did not resolve
// (their rules are missing until a later refresh resolves them).
type Plan struct {
	Ruleset    string
	Unresolved []string
}

// Render builds the ruleset. Host names (the cloud's, the proxy's, the
// update server's) are resolved now; run it again when they may change.
func Render(ctx context.Context, s settings.Settings, resolve Resolver) (Plan, error) {
	v, err := s.View()
	if err != nil {
		return Plan{}, err
	}
	var plan Plan
	var out []dest
	addURL := func(what, raw string) {
		if raw == "" {
			return
		}
		host, port, err := settings.HostPort(raw)
		if err != nil {
			plan.Unresolved = append(plan.Unresolved, raw)
			return
		}
		addrs, err := resolve(ctx, host)
		if err != nil || len(addrs) == 0 {
			plan.Unresolved = append(plan.Unresolved, host)
			return
		}
		for _, a := range addrs {
			out = append(out, dest{what, "tcp", a.Unmap(), port})
		}
	}
	addURL("cloud", v.Cloud.URL)
	addURL("proxy", v.Cloud.Proxy)
	addURL("updates", s.Update.URL)
	dnsServers := slices.Clone(s.Network.DNS)
	if v.DNS.Enabled {
		for _, u := range v.DNS.Upstreams {
			if h, _, err := net.SplitHostPort(u); err == nil {
				u = h
			}
			dnsServers = append(dnsServers, u)
		}
	}
	for _, d := range dnsServers {
		if a, err := netip.ParseAddr(d); err == nil {
			out = append(out, dest{"dns", "udp", a, 53}, dest{"dns", "tcp", a, 53})
		}
	}
	for _, n := range s.NTP {
		if a, err := netip.ParseAddr(n); err == nil {
			out = append(out, dest{"ntp", "udp", a, 123})
		}
	}
	clusterPort, _ := settings.Port(v.Cluster.Bind)
	var peers []netip.Addr
	for _, p := range s.ClusterPeers {
		if a, err := netip.ParseAddr(p); err == nil {
			peers = append(peers, a)
			out = append(out, dest{"cluster", "tcp", a, clusterPort})
		}
	}
	var mgmt []netip.Prefix
	for _, m := range s.Management {
		if p, err := settings.ParsePrefixOrAddr(m); err == nil {
			mgmt = append(mgmt, p)
		}
	}
	agentPort, _ := settings.Port(v.Listen)
	adminPort, _ := settings.Port(v.AdminListen)
	dnsPort, _ := settings.Port(v.DNS.Listen)

	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	// Declaring then deleting the table makes the load replace it atomically.
	w("table inet %s", Table)
	w("delete table inet %s", Table)
	w("table inet %s {", Table)
	w("\tcounter dropped_in {}")
	w("\tcounter dropped_out {}")
	w("\tchain input {")
	w("\t\ttype filter hook input priority filter; policy drop;")
	w("\t\tiif lo accept")
	w("\t\tct state established,related accept")
	w("\t\tct state invalid drop")
	// IPv6 needs neighbour discovery; IPv4 path-MTU and errors come as related.
	w("\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } ip6 hoplimit 255 accept")
	if s.Network.Address == "dhcp" {
		w("\t\tudp sport 67 udp dport 68 accept comment \"dhcp\"")
		w("\t\tudp sport 547 udp dport 546 accept comment \"dhcpv6\"")
	}
	w("\t\tmeta l4proto { tcp, udp } th dport %d accept comment \"agents: QUIC and TLS over TCP\"", agentPort)
	if v.DNS.Enabled {
		w("\t\tmeta l4proto { tcp, udp } th dport %d accept comment \"agents: the relay's DNS\"", dnsPort)
	}
	if len(peers) > 0 {
		for _, fam := range families(peers) {
			w("\t\t%s saddr { %s } tcp dport %d accept comment \"cluster members\"", fam.name, join(fam.addrs), clusterPort)
		}
	}
	if len(mgmt) > 0 {
		for _, fam := range prefixFamilies(mgmt) {
			w("\t\t%s saddr { %s } tcp dport %d accept comment \"management: admin port\"", fam.name, fam.list, adminPort)
		}
	}
	w("\t\tcounter name dropped_in drop")
	w("\t}")
	w("\tchain forward {")
	w("\t\ttype filter hook forward priority filter; policy drop;")
	w("\t}")
	w("\tchain output {")
	w("\t\ttype filter hook output priority filter; policy drop;")
	w("\t\toif lo accept")
	w("\t\tct state established,related accept")
	w("\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept")
	if s.Network.Address == "dhcp" {
		w("\t\tudp sport 68 udp dport 67 accept comment \"dhcp\"")
		w("\t\tudp sport 546 udp dport 547 accept comment \"dhcpv6\"")
	}
	slices.SortFunc(out, func(a, b dest) int { return strings.Compare(a.String(), b.String()) })
	out = slices.CompactFunc(out, func(a, b dest) bool { return a.String() == b.String() })
	for _, d := range out {
		fam := "ip"
		if d.addr.Is6() {
			fam = "ip6"
		}
		w("\t\t%s daddr %s %s dport %d accept comment %q", fam, d.addr, d.proto, d.port, d.what)
	}
	w("\t\tcounter name dropped_out drop")
	w("\t}")
	w("}")
	plan.Ruleset = b.String()
	return plan, nil
}

func (d dest) String() string { return fmt.Sprintf("%s %s %s %d", d.what, d.proto, d.addr, d.port) }

type family struct {
	name  string
	addrs []netip.Addr
}

func families(addrs []netip.Addr) []family {
	var v4, v6 family
	v4.name, v6.name = "ip", "ip6"
	for _, a := range addrs {
		if a.Unmap().Is4() {
			v4.addrs = append(v4.addrs, a.Unmap())
		} else {
			v6.addrs = append(v6.addrs, a)
		}
	}
	var fs []family
	for _, f := range []family{v4, v6} {
		if len(f.addrs) > 0 {
			fs = append(fs, f)
		}
	}
	return fs
}

func join(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

type prefixFamily struct{ name, list string }

func prefixFamilies(ps []netip.Prefix) []prefixFamily {
	var v4, v6 []string
	for _, p := range ps {
		if p.Addr().Is4() {
			v4 = append(v4, p.String())
		} else {
			v6 = append(v6, p.String())
		}
	}
	var fs []prefixFamily
	if len(v4) > 0 {
		fs = append(fs, prefixFamily{"ip", strings.Join(v4, ", ")})
	}
	if len(v6) > 0 {
		fs = append(fs, prefixFamily{"ip6", strings.Join(v6, ", ")})
	}
	return fs
}

// Apply loads the ruleset with nft, replacing the table in one transaction.
func Apply(ctx context.Context, ruleset string) error {
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v: %s", err, out)
	}
	return nil
}
