package daemon

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/cluster"
	clusterv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cluster/v1"
	"github.com/gatehouse/gatehouse/relay/internal/dnsserver"
)

// healthProbeEvery is how often the relay checks which relays of the site
// answer on their agent port; a dead node leaves the service name's answers
// within about two probes.
const healthProbeEvery = 2 * time.Second

// runDNSSync keeps the DNS server's overrides (the file's plus the cluster's)
// and the service name's healthy relays current until ctx ends.
func (d *Daemon) runDNSSync(ctx context.Context) error {
	var changes <-chan struct{}
	if d.node != nil {
		w := d.node.Watch(cluster.KindDNS | cluster.KindMembers | cluster.KindIsolation | cluster.KindAllowLists)
		defer w.Close()
		changes = w.C()
	}
	d.applyOverrides()
	probe := time.NewTicker(healthProbeEvery)
	defer probe.Stop()
	d.probeRelays(ctx)
	iso := &dnsIsolation{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
			d.applyOverrides()
			d.probeRelays(ctx)
		case <-d.dnsChanged:
			d.applyOverrides()
		case <-probe.C:
			d.probeRelays(ctx)
		}
		d.syncIsolationDNS(iso)
	}
}

// applyOverrides serves the config file's records plus the site's from the
// cloud (through the cluster's Raft state, or straight from the last poll
// for a relay alone); the cloud's record for a name and type wins.
func (d *Daemon) applyOverrides() {
	var site []*clusterv1.DnsOverride
	if d.node != nil {
		site = d.node.Store().DNSOverrides()
	} else if p := d.lastControl.Load(); p != nil {
		site = dnsOverridesFrom(p)
	}
	key := func(name, typ string) string {
		return strings.ToLower(strings.TrimSuffix(name, ".")) + "/" + strings.ToUpper(typ)
	}
	seen := map[string]bool{}
	var fromSite []dnsserver.Record
	for _, o := range site {
		typ := strings.TrimPrefix(o.GetType().String(), "DNS_TYPE_")
		seen[key(o.GetName(), typ)] = true
		for _, v := range o.GetValues() {
			fromSite = append(fromSite, dnsserver.Record{
				Name: o.GetName(), Type: typ, Value: v, TTL: time.Duration(o.GetTtlSeconds()) * time.Second,
			})
		}
	}
	var recs []dnsserver.Record
	for _, r := range d.cfg.DNS.Overrides {
		if !seen[key(r.Name, r.Type)] {
			recs = append(recs, r)
		}
	}
	if err := d.dns.SetOverrides(append(recs, fromSite...)); err != nil {
		d.log.Error("dns overrides refused; keeping the previous set", "err", err)
	}
}

// probeRelays answers the service name with the relays of the site whose
// agent port accepts a TCP connection now (this relay alone when it is not
// in a cluster).
func (d *Daemon) probeRelays(ctx context.Context) {
	type cand struct{ name, addr string }
	cands := []cand{{d.cfg.Name, d.cfg.Advertise}}
	if d.node != nil {
		cands = cands[:0]
		for _, m := range d.node.Store().Members() {
			if m.GetAgentAddr() != "" {
				cands = append(cands, cand{m.GetName(), m.GetAgentAddr()})
			}
		}
	}
	var healthy []dnsserver.Relay
	for _, c := range cands {
		host, portStr, err := net.SplitHostPort(c.addr)
		if err != nil {
			continue
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || ip.IsUnspecified() {
			continue // a relay listening on every address is told by name only
		}
		port, _ := strconv.ParseUint(portStr, 10, 16)
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", c.addr)
		cancel()
		if err != nil {
			continue
		}
		conn.Close()
		healthy = append(healthy, dnsserver.Relay{Name: c.name, IPs: []netip.Addr{ip}, Port: uint16(port)})
	}
	d.dns.SetHealthyRelays(healthy)
}

// dnsIsolation is what strict isolation DNS currently restricts.
type dnsIsolation struct {
	ips   map[netip.Addr]bool
	names []string
}

// syncIsolationDNS restricts the DNS answers of isolated agents connected
// here to their tenant's allow-list (dns.strict_isolation), and lifts it
// when they are released or leave.
func (d *Daemon) syncIsolationDNS(cur *dnsIsolation) {
	if !d.cfg.DNS.StrictIsolation {
		return
	}
	src := d.source()
	_, names := src.allowList()
	want := map[netip.Addr]bool{}
	for _, id := range d.agentsWithWork() {
		if isolated, _ := src.isolation(id); !isolated {
			continue
		}
		if ip, ok := d.in.AgentAddr(id); ok {
			want[ip] = true
		}
	}
	namesChanged := !slices.Equal(names, cur.names)
	for ip := range want {
		if !cur.ips[ip] || namesChanged {
			d.dns.SetIsolated(ip, names)
		}
	}
	for ip := range cur.ips {
		if !want[ip] {
			d.dns.ClearIsolated(ip)
		}
	}
	cur.ips, cur.names = want, names
}
