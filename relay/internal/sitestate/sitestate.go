// Package sitestate is the relay's one source of control state: the site's
// Raft state (package cluster), which a relay alone keeps as a cluster of
// one. It holds the agent registry, the offline registrations still to tell
// the cloud, and the cloud's control state (registration key hashes, group
// tiers, DNS overrides, isolation, allow-lists, pending actions), written
// here from each control poll and read by ingress, uplink and dispatch.
package sitestate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/cluster"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	clusterv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cluster/v1"
)

// ErrNotFound is returned for an unknown agent.
var ErrNotFound = cluster.ErrNotFound

// AgentRecord is what the relay knows of a registered agent.
type AgentRecord struct {
	AgentID      string
	TenantID     string
	GroupID      string
	RegisteredAt time.Time
	// Pending is true while an offline registration awaits the cloud.
	Pending bool
}

// State reads the node's replicated state and writes to it through Raft.
type State struct {
	node    *cluster.Node
	timeout time.Duration // of each write
	id      Identity
	log     *slog.Logger
}

// Identity is who the relay is at the cloud (*enrollment.State): the
// cloud's allow-list is stored per tenant.
type Identity interface {
	TenantID() string // "" before enrollment
}

// Deps are what State works on.
type Deps struct {
	Node     *cluster.Node
	Identity Identity
	Logger   *slog.Logger
}

// New returns the state of deps.Node; writes wait at most writeTimeout.
func New(writeTimeout time.Duration, deps Deps) *State {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	return &State{node: deps.Node, timeout: writeTimeout, id: deps.Identity, log: deps.Logger}
}

// Node is the cluster node the state lives in.
func (s *State) Node() *cluster.Node { return s.node }

// Agent reads the replicated registry (locally: possibly a little stale,
// which only delays an agent registered a moment ago on another node).
func (s *State) Agent(agentID string) (AgentRecord, error) {
	a, err := s.node.Store().Agent(agentID)
	if err != nil {
		return AgentRecord{}, err
	}
	return AgentRecord{
		AgentID: a.GetAgentId(), TenantID: a.GetTenantId(), GroupID: a.GetGroupId(),
		RegisteredAt: time.UnixMilli(a.GetRegisteredUnixMs()), Pending: a.GetPendingReconcile(),
	}, nil
}

// PutAgent registers an agent through Raft, so a node cut off in a
// minority refuses new registrations (known agents keep streaming). With
// pending non-nil the agent was registered offline: the request is kept
// until ReconcileDone.
func (s *State) PutAgent(rec AgentRecord, pending *cloudv1.RegisterAgentRequest) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	a := cluster.NewAgent(rec.AgentID, nil, rec.TenantID, rec.GroupID, "", "", rec.Pending)
	a.RegisteredUnixMs = rec.RegisteredAt.UnixMilli()
	if pending != nil {
		a.PublicKey, a.Hostname, a.PendingRequest = pending.GetPublicKey(), pending.GetHostname(), pending
	}
	if _, err := s.node.RegisterAgent(ctx, a); err != nil {
		return fmt.Errorf("register agent %s in the site state: %w", rec.AgentID, err)
	}
	return nil
}

// RegistrationKeys are the key hashes of the last control poll and its
// version (0: never polled), for registering agents while the cloud is away.
func (s *State) RegistrationKeys() (uint64, []*cloudv1.RegistrationKeyHash) {
	k := s.node.Store().RegistrationKeys()
	return k.GetVersion(), k.GetKeys()
}

// ControlVersion is the version of the last control poll applied.
func (s *State) ControlVersion() uint64 { return s.node.Store().RegistrationKeys().GetVersion() }

// GroupTier is groupID's policy tier from the last control poll ("" unknown).
func (s *State) GroupTier(groupID string) string { return s.node.Store().GroupTier(groupID) }

// PendingRegistrations lists offline registrations not yet told to the
// cloud. Only the leader tells the cloud, so that one registration is
// reported once however many relays the site has.
func (s *State) PendingRegistrations() []*cloudv1.RegisterAgentRequest {
	if !s.node.IsLeader() {
		return nil
	}
	var out []*cloudv1.RegisterAgentRequest
	for _, a := range s.node.Store().PendingReconcile() {
		if req := a.GetPendingRequest(); req != nil {
			out = append(out, req)
		}
	}
	return out
}

// ReconcileDone records the cloud's answer to an offline registration:
// resp is the cloud's record of the agent, or nil when it refused it (the
// agent is forgotten: its batches will be refused and counted).
func (s *State) ReconcileDone(ctx context.Context, agentID string, resp *cloudv1.RegisterAgentResponse) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if resp == nil {
		_, err := s.node.DeregisterAgent(ctx, agentID)
		return err
	}
	a, err := s.node.Store().Agent(agentID)
	if err != nil {
		return err
	}
	a.TenantId, a.GroupId, a.PendingReconcile, a.PendingRequest = resp.GetTenantId(), resp.GetGroupId(), false, nil
	_, err = s.node.RegisterAgent(ctx, a)
	return err
}

// ApplyControl writes the cloud's control state for this site into the
// Raft state, as differences from what it holds, so every node may do it
// after each poll and the writes stay few and idempotent. A node in a
// minority cannot write: the error says so and the next poll retries.
func (s *State) ApplyControl(ctx context.Context, resp *cloudv1.ControlPollResponse) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	st := s.node.Store()
	var errs []error
	keep := func(_ uint64, err error) { errs = append(errs, err) }

	if have := st.RegistrationKeys(); have.GetVersion() < resp.GetVersion() {
		keep(s.node.SetRegistrationKeys(ctx, resp.GetVersion(), resp.GetRegistrationKeys(), resp.GetGroupPolicies()))
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
			keep(s.node.DeleteDNSOverride(ctx, k.name, k.typ))
		case proto.Equal(w, o):
			delete(want, k)
		}
	}
	for _, o := range want {
		keep(s.node.SetDNSOverride(ctx, o))
	}

	// The allow-list before isolation: an agent isolated by this poll is
	// told its state once, with the list it needs, not first without it.
	if tenant := s.id.TenantID(); tenant != "" && resp.GetAllowList() != nil {
		al := &clusterv1.AllowList{TenantId: tenant, Cidrs: resp.GetAllowList().GetCidrs(), Names: resp.GetAllowList().GetNames()}
		cur, err := st.AllowList(tenant)
		if errors.Is(err, cluster.ErrNotFound) || (err == nil && !(slices.Equal(cur.GetCidrs(), al.Cidrs) && slices.Equal(cur.GetNames(), al.Names))) {
			keep(s.node.SetAllowList(ctx, al))
		}
	}

	for _, iso := range resp.GetIsolation() {
		if cur := st.Isolation(iso.GetAgentId()); cur.GetIsolated() != iso.GetIsolated() {
			keep(s.node.SetIsolation(ctx, iso.GetAgentId(), iso.GetIsolated()))
		}
	}

	errs = append(errs, s.syncActions(ctx, resp)...)
	return errors.Join(errs...)
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

// syncActions makes the cluster's pending commands the cloud's pending
// actions: new ones enqueued, finished ones (a result recorded elsewhere)
// removed.
func (s *State) syncActions(ctx context.Context, resp *cloudv1.ControlPollResponse) []error {
	var errs []error
	want := map[string]*cloudv1.PendingAction{}
	for _, a := range resp.GetActions() {
		want[a.GetActionId()] = a
	}
	for _, c := range s.node.Store().AllPendingCommands() {
		if _, ok := want[c.GetCommandId()]; ok {
			delete(want, c.GetCommandId())
			continue
		}
		if _, err := s.node.CompleteCommand(ctx, c.GetAgentId(), c.GetCommandId()); err != nil {
			errs = append(errs, err)
		}
	}
	for _, a := range want {
		if _, err := s.node.EnqueueCommand(ctx, &clusterv1.PendingCommand{
			CommandId: a.GetActionId(), AgentId: a.GetAgentId(), Action: a.GetAction(), CreatedUnixMs: a.GetCreatedUnixMs(),
		}); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}
