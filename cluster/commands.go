package cluster

import (
	"context"
	"crypto/ed25519"

	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/cluster/state"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	clusterv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cluster/v1"
)

// Typed write helpers for the relay. Each returns the Raft index of the
// committed write; errors wrap ErrNoQuorum when no majority is reachable.

// RegisterAgent records a registered agent. pendingReconcile marks an
// offline registration the relay must still tell the cloud about.
func (n *Node) RegisterAgent(ctx context.Context, a *clusterv1.Agent) (uint64, error) {
	a = proto.CloneOf(a)
	if a.RegisteredUnixMs == 0 {
		a.RegisteredUnixMs = n.deps.Clock.Now().UnixMilli()
	}
	if err := state.ValidateAgent(a); err != nil {
		return 0, err
	}
	return n.Apply(ctx, Command{Type: CmdRegisterAgent, Body: a})
}

// NewAgent builds the Agent record for RegisterAgent.
func NewAgent(agentID string, pub ed25519.PublicKey, tenantID, groupID, policyTier, hostname string, pendingReconcile bool) *clusterv1.Agent {
	return &clusterv1.Agent{AgentId: agentID, PublicKey: pub, TenantId: tenantID, GroupId: groupID,
		PolicyTier: policyTier, Hostname: hostname, PendingReconcile: pendingReconcile}
}

// ReconcileAgent clears an agent's pending_reconcile flag once the cloud knows it.
func (n *Node) ReconcileAgent(ctx context.Context, agentID string) (uint64, error) {
	return n.Apply(ctx, Command{Type: CmdReconcileAgent, Body: &clusterv1.AgentRef{AgentId: agentID}})
}

// DeregisterAgent forgets an agent with its isolation intent and pending commands.
func (n *Node) DeregisterAgent(ctx context.Context, agentID string) (uint64, error) {
	return n.Apply(ctx, Command{Type: CmdDeregisterAgent, Body: &clusterv1.AgentRef{AgentId: agentID}})
}

// SetRegistrationKeys replaces the key hashes and group policy tiers
// wholesale with a cloud poll's answer; an answer older than the stored
// version is ignored.
func (n *Node) SetRegistrationKeys(ctx context.Context, version uint64, keys []*cloudv1.RegistrationKeyHash, policies []*cloudv1.GroupPolicy) (uint64, error) {
	return n.Apply(ctx, Command{Type: CmdSetRegistrationKeys, Body: &clusterv1.RegistrationKeys{Version: version, Keys: keys, GroupPolicies: policies}})
}

// SetIsolation records whether an agent must be isolated.
func (n *Node) SetIsolation(ctx context.Context, agentID string, isolated bool) (uint64, error) {
	return n.Apply(ctx, Command{Type: CmdSetIsolation, Body: &clusterv1.IsolationIntent{
		AgentId: agentID, Isolated: isolated, UpdatedUnixMs: n.deps.Clock.Now().UnixMilli(),
	}})
}

// SetDNSOverride adds or replaces the override for (name, type).
func (n *Node) SetDNSOverride(ctx context.Context, d *clusterv1.DnsOverride) (uint64, error) {
	if err := state.ValidateDNS(d); err != nil {
		return 0, err
	}
	return n.Apply(ctx, Command{Type: CmdSetDNSOverride, Body: d})
}

// DeleteDNSOverride removes the override for (name, type).
func (n *Node) DeleteDNSOverride(ctx context.Context, name string, typ cloudv1.DnsType) (uint64, error) {
	return n.Apply(ctx, Command{Type: CmdDeleteDNSOverride, Body: &clusterv1.DnsOverrideRef{Name: name, Type: typ}})
}

// SetAllowList replaces a tenant's allow-list.
func (n *Node) SetAllowList(ctx context.Context, a *clusterv1.AllowList) (uint64, error) {
	if err := state.ValidateAllowList(a); err != nil {
		return 0, err
	}
	return n.Apply(ctx, Command{Type: CmdSetAllowList, Body: a})
}

// DeleteAllowList removes a tenant's allow-list.
func (n *Node) DeleteAllowList(ctx context.Context, tenantID string) (uint64, error) {
	return n.Apply(ctx, Command{Type: CmdDeleteAllowList, Body: &clusterv1.AllowList{TenantId: tenantID}})
}

// EnqueueCommand stores a command for an agent until its result arrives.
func (n *Node) EnqueueCommand(ctx context.Context, c *clusterv1.PendingCommand) (uint64, error) {
	c = proto.CloneOf(c)
	if c.CreatedUnixMs == 0 {
		c.CreatedUnixMs = n.deps.Clock.Now().UnixMilli()
	}
	return n.Apply(ctx, Command{Type: CmdEnqueueCommand, Body: c})
}

// CompleteCommand removes a command once the agent sent its result.
func (n *Node) CompleteCommand(ctx context.Context, agentID, commandID string) (uint64, error) {
	return n.Apply(ctx, Command{Type: CmdCompleteCommand, Body: &clusterv1.CommandRef{AgentId: agentID, CommandId: commandID}})
}
