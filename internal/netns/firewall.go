package netns

import (
	"fmt"
	"net/netip"
	"strings"
)

// Policy is a firewall preset for the router between the agent network,
// the DMZ and the cloud network. Forwarding is stateful (replies to allowed
// connections pass) and everything not allowed is dropped silently, as a
// real firewall does: no ICMP or RST tells the sender.
type Policy struct {
	Name string
	// DropAgentUDP drops every UDP datagram from the agent network to the
	// DMZ (QUIC cannot pass; TCP can).
	DropAgentUDP bool
	// AgentsOnlyToProxy lets agents reach only the proxy's port in the DMZ.
	AgentsOnlyToProxy bool
	// DMZEgressOnlyProxy lets only the proxy reach the cloud, on 443/tcp;
	// the relays cannot reach it themselves.
	DMZEgressOnlyProxy bool
}

// The presets. "Proxy down" is not a rule: stop the proxy (Proxy.Stop).
var (
	// Open: agents reach the DMZ, the DMZ reaches the cloud.
	Open = Policy{Name: "open"}
	// AgentUDPDropped: agents' UDP to the DMZ is dropped silently.
	AgentUDPDropped = Policy{Name: "agent-udp-dropped", DropAgentUDP: true}
	// DMZEgressViaProxy: only the proxy may leave the DMZ, to the cloud on
	// 443/tcp; agents still reach the relays directly.
	DMZEgressViaProxy = Policy{Name: "dmz-egress-via-proxy", DMZEgressOnlyProxy: true}
	// ProxyOnly: agents reach only the proxy, and only the proxy reaches
	// the cloud: agent -> proxy -> relay -> proxy -> cloud.
	ProxyOnly = Policy{Name: "proxy-only", DropAgentUDP: true, AgentsOnlyToProxy: true, DMZEgressOnlyProxy: true}
)

// Ruleset renders the policy as a `table inet gatehouse` definition.
// proxy is the proxy's listen address; it may be nil when the policy does
// not name the proxy.
func (p Policy) Ruleset(proxy *netip.AddrPort) (string, error) {
	if proxy == nil && (p.AgentsOnlyToProxy || p.DMZEgressOnlyProxy) {
		return "", fmt.Errorf("firewall policy %s needs the proxy's address", p.Name)
	}
	ag, dmz, cl := Agents.Prefix, DMZ.Prefix, Cloud.Prefix
	var r []string
	add := func(format string, a ...any) { r = append(r, fmt.Sprintf(format, a...)) }
	// Denials first, so a switch at runtime also cuts flows already under
	// way (conntrack would otherwise keep them "established").
	if p.AgentsOnlyToProxy {
		add("ip saddr %s ip daddr %s ip daddr != %s counter drop comment \"agents-only-to-proxy\"", ag, dmz, proxy.Addr())
		add("ip saddr %s ip daddr %s tcp dport != %d counter drop comment \"agents-only-to-proxy\"", ag, proxy.Addr(), proxy.Port())
	}
	if p.DropAgentUDP {
		add("ip saddr %s ip daddr %s meta l4proto udp counter drop comment \"agent-udp\"", ag, dmz)
	}
	if p.DMZEgressOnlyProxy {
		add("ip saddr %s ip saddr != %s ip daddr %s counter drop comment \"dmz-egress-only-proxy\"", dmz, proxy.Addr(), cl)
		add("ip saddr %s ip daddr %s tcp dport != 443 counter drop comment \"dmz-egress-only-proxy\"", proxy.Addr(), cl)
	}
	add("ct state established,related accept")
	add("ct state invalid drop")
	add("icmp type echo-request accept")
	add("ip saddr %s ip daddr %s accept", ag, dmz)
	add("ip saddr %s ip daddr %s accept", dmz, dmz)
	add("ip saddr %s ip daddr %s accept", dmz, cl)
	add("counter drop comment \"denied\"")
	return "table inet gatehouse {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t\t" +
		strings.Join(r, "\n\t\t") + "\n\t}\n}\n", nil
}

// ruleset is Ruleset for policies that need no proxy; it panics otherwise.
func (p Policy) ruleset(proxy *netip.AddrPort) string {
	s, err := p.Ruleset(proxy)
	if err != nil {
		panic(err)
	}
	return s
}

// Dropped returns how many packets the router's rules with this comment
// dropped ("agent-udp", "agents-only-to-proxy", "dmz-egress-only-proxy",
// "denied").
func (top *Topology) Dropped(comment string) (int64, error) {
	out, err := Exec(top.Router, "nft", "list", "table", "inet", "gatehouse")
	if err != nil {
		return 0, err
	}
	var total int64
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, `comment "`+comment+`"`) {
			continue
		}
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "packets" {
				var n int64
				fmt.Sscan(f[i+1], &n)
				total += n
			}
		}
	}
	return total, nil
}
