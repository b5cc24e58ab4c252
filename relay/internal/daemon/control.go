package daemon

import (
	"context"
	"errors"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/cluster"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	clusterv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cluster/v1"
)

// applyControl writes the cloud's control state for this site into the
// cluster's Raft state, as differences from what the cluster holds, so every
// node may do it after each poll and the writes stay few and idempotent.
// A node in a minority cannot write; it logs that and the next poll retries.
func (d *Daemon) applyControl(ctx context.Context, resp *cloudv1.ControlPollResponse) {
	d.lastControl.Store(resp)
	if d.node == nil {
		d.pushAll(d.agentsWithWork())
		// A relay alone serves the cloud's DNS overrides straight from the poll.
		select {
		case d.dnsChanged <- struct{}{}:
		default:
		}
		return
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Cluster.ApplyTimeout)
	defer cancel()
	st := d.node.Store()
	var errs []error
	keep := func(_ uint64, err error) { errs = append(errs, err) }

	if have := st.RegistrationKeys(); have.GetVersion() < resp.GetVersion() {
		keep(d.node.SetRegistrationKeys(ctx, resp.GetVersion(), resp.GetRegistrationKeys()))
	}

	type dnsKey struct {
		name string
		typ  cloudv1.DnsType
	}
	want := map[dnsKey]*clusterv1.DnsOverride{}
	for _, o := range dnsOverridesFrom(resp) {
		want[dnsKey{o.GetName(), o.GetType()}] = o
	}
	for _, o := range st.DNSOverrides() {
		k := dnsKey{o.GetName(), o.GetType()}
		w, ok := want[k]
		switch {
		case !ok:
			keep(d.node.DeleteDNSOverride(ctx, k.name, k.typ))
		case proto.Equal(w, o):
			delete(want, k)
		}
	}
	for _, o := range want {
		keep(d.node.SetDNSOverride(ctx, o))
	}

	for _, iso := range resp.GetIsolation() {
		if cur := st.Isolation(iso.GetAgentId()); cur.GetIsolated() != iso.GetIsolated() {
			keep(d.node.SetIsolation(ctx, iso.GetAgentId(), iso.GetIsolated()))
		}
	}

	if e := d.up.Enrollment(); e != nil && resp.GetAllowList() != nil {
		al := &clusterv1.AllowList{TenantId: e.GetTenantId(), Cidrs: resp.GetAllowList().GetCidrs(), Names: resp.GetAllowList().GetNames()}
		cur, err := st.AllowList(e.GetTenantId())
		if errors.Is(err, cluster.ErrNotFound) || (err == nil && !(slices.Equal(cur.GetCidrs(), al.Cidrs) && slices.Equal(cur.GetNames(), al.Names))) {
			keep(d.node.SetAllowList(ctx, al))
		}
	}

	errs = append(errs, d.syncActions(ctx, resp)...)
	if err := errors.Join(errs...); err != nil {
		d.log.Warn("cloud control state not yet in the cluster; retrying at the next poll", "err", err)
	}
}

// dnsOverridesFrom is the poll's DNS overrides in the cluster's form (both
// schemas use cloud.v1's DnsType).
func dnsOverridesFrom(resp *cloudv1.ControlPollResponse) []*clusterv1.DnsOverride {
	var out []*clusterv1.DnsOverride
	for _, o := range resp.GetDnsOverrides() {
		out = append(out, &clusterv1.DnsOverride{
			Name: o.GetName(), Type: o.GetType(), Values: o.GetValues(), TtlSeconds: o.GetTtlSeconds(),
		})
	}
	return out
}
