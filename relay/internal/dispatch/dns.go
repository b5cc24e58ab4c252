package dispatch

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/gatehouse/gatehouse/cluster"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/dnsserver"
	"github.com/gatehouse/gatehouse/relay/internal/sitestate"
)

// healthProbeEvery is how often the relay checks which relays of the site
// answer on their agent port; a dead node leaves the service name's answers
// within about two probes.
const healthProbeEvery = 2 * time.Second

// DNSServer is what DNS needs of the DNS server (*dnsserver.Server).
type DNSServer interface {
	SetOverrides(recs []dnsserver.Record) error
	SetHealthyRelays(relays []dnsserver.Relay)
	SetIsolated(clientIP netip.Addr, allowNames []string)
	ClearIsolated(clientIP netip.Addr)
}

// AgentAddrs is what DNS needs of ingress (*ingress.Server): the address a
// connected agent comes from, which is where its DNS queries come from.
type AgentAddrs interface {
	AgentAddr(agentID string) (netip.Addr, bool)
}

// DNSConfig is what the relay's config says of DNS dispatch.
type DNSConfig struct {
	// Overrides are the config file's records; the cloud's for the same
	// name and type win.
	Overrides []dnsserver.Record
	// StrictIsolation restricts isolated agents' answers to their tenant's
	// allow-list (dns.strict_isolation).
	StrictIsolation bool
}

// DNS keeps the DNS server's overrides (the file's plus the site's), the
// service name's healthy relays and the isolation restrictions current.
type DNS struct {
	cfg    DNSConfig
	state  *sitestate.State
	server DNSServer
	agents AgentAddrs
	log    *slog.Logger
	clock  clockwork.Clock
	iso    dnsIsolation
}

// DNSDeps is what DNS works with.
type DNSDeps struct {
	State  *sitestate.State
	Server DNSServer
	Agents AgentAddrs
	Logger *slog.Logger
	Clock  clockwork.Clock // nil: the real clock
}

// NewDNS starts nothing.
func NewDNS(cfg DNSConfig, d DNSDeps) *DNS {
	if d.Clock == nil {
		d.Clock = clockwork.NewRealClock()
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	return &DNS{cfg: cfg, state: d.State, server: d.Server, agents: d.Agents, log: d.Logger, clock: d.Clock}
}

// Run serves changes of the site state and probes the site's relays until
// ctx ends.
func (d *DNS) Run(ctx context.Context) error {
	w := d.state.Node().Watch(cluster.KindDNS | cluster.KindMembers | cluster.KindIsolation | cluster.KindAllowLists)
	defer w.Close()
	d.applyOverrides()
	probe := d.clock.NewTicker(healthProbeEvery)
	defer probe.Stop()
	d.probeRelays(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.C():
			d.applyOverrides()
			d.probeRelays(ctx)
		case <-probe.Chan():
			d.probeRelays(ctx)
		}
		d.syncIsolation()
	}
}

// applyOverrides serves the config file's records plus the site's; the
// cloud's record for a name and type wins.
func (d *DNS) applyOverrides() {
	key := func(name, typ string) string {
		return strings.ToLower(strings.TrimSuffix(name, ".")) + "/" + strings.ToUpper(typ)
	}
	seen := map[string]bool{}
	var fromSite []dnsserver.Record
	for _, o := range d.state.Node().Store().DNSOverrides() {
		typ := dnsTypeName(o.GetType())
		seen[key(o.GetName(), typ)] = true
		for _, v := range o.GetValues() {
			fromSite = append(fromSite, dnsserver.Record{
				Name: o.GetName(), Type: typ, Value: v, TTL: time.Duration(o.GetTtlSeconds()) * time.Second,
			})
		}
	}
	var recs []dnsserver.Record
	for _, r := range d.cfg.Overrides {
		if !seen[key(r.Name, r.Type)] {
			recs = append(recs, r)
		}
	}
	if err := d.server.SetOverrides(append(recs, fromSite...)); err != nil {
		d.log.Error("dns overrides refused; keeping the previous set", "err", err)
	}
}

// dnsTypeName is the record type's name as dnsserver spells it ("AAAA").
func dnsTypeName(t cloudv1.DnsType) string { return strings.TrimPrefix(t.String(), "DNS_TYPE_") }

// probeRelays answers the service name with the relays of the site whose
// agent port accepts a TCP connection now.
func (d *DNS) probeRelays(ctx context.Context) {
	var healthy []dnsserver.Relay
	for _, m := range d.state.Node().Store().Members() {
		if m.GetAgentAddr() == "" {
			continue
		}
		host, portStr, err := net.SplitHostPort(m.GetAgentAddr())
		if err != nil {
			continue
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || ip.IsUnspecified() {
			continue // a relay listening on every address is told by name only
		}
		port, _ := strconv.ParseUint(portStr, 10, 16)
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", m.GetAgentAddr())
		cancel()
		if err != nil {
			continue
		}
		conn.Close()
		healthy = append(healthy, dnsserver.Relay{Name: m.GetName(), IPs: []netip.Addr{ip}, Port: uint16(port)})
	}
	d.server.SetHealthyRelays(healthy)
}

// dnsIsolation is what strict isolation DNS currently restricts.
type dnsIsolation struct {
	ips   map[netip.Addr]bool
	names []string
}

// syncIsolation restricts the DNS answers of isolated agents connected
// here to their tenant's allow-list, and lifts it when they are released
// or leave.
func (d *DNS) syncIsolation() {
	if !d.cfg.StrictIsolation {
		return
	}
	cur := &d.iso
	_, names := d.state.AllowList()
	want := map[netip.Addr]bool{}
	for _, id := range d.state.AgentsWithWork() {
		if !d.state.Isolated(id) {
			continue
		}
		if ip, ok := d.agents.AgentAddr(id); ok {
			want[ip] = true
		}
	}
	namesChanged := !slices.Equal(names, cur.names)
	for ip := range want {
		if !cur.ips[ip] || namesChanged {
			d.server.SetIsolated(ip, names)
		}
	}
	for ip := range cur.ips {
		if !want[ip] {
			d.server.ClearIsolated(ip)
		}
	}
	cur.ips, cur.names = want, names
}
