package sitestate

import (
	"context"
	"fmt"

	"github.com/gatehouse/gatehouse/cluster"
	"github.com/gatehouse/gatehouse/relay/internal/spool"
)

// ImportLegacy moves the registry an old spool kept (a relay from before
// every relay was a cluster member) into the site state, so that its agents
// stay admitted and its offline registrations still reach the cloud. Agents
// the site state already knows are left as they are. It returns how many
// agents it moved.
func (s *State) ImportLegacy(ctx context.Context, l spool.LegacyRegistry) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if c := l.Control; c != nil && s.ControlVersion() < c.GetVersion() {
		if _, err := s.node.SetRegistrationKeys(ctx, c.GetVersion(), c.GetRegistrationKeys(), c.GetGroupPolicies()); err != nil {
			return 0, fmt.Errorf("move the cached control state: %w", err)
		}
	}
	moved := 0
	for _, la := range l.Agents {
		if _, err := s.node.Store().Agent(la.AgentID); err == nil {
			continue
		}
		if la.AgentID == "" || la.TenantID == "" {
			// Never written by a relay (it always knew the tenant): nothing
			// to admit; the agent registers again if it is real.
			s.log.Warn("spool's old agent registry: record without agent or tenant id left behind", "agent_id", la.AgentID)
			continue
		}
		a := cluster.NewAgent(la.AgentID, nil, la.TenantID, la.GroupID, "", "", la.Pending && la.Request != nil)
		a.RegisteredUnixMs = la.RegisteredAt.UnixMilli()
		if a.PendingReconcile {
			a.PublicKey, a.Hostname, a.PendingRequest = la.Request.GetPublicKey(), la.Request.GetHostname(), la.Request
		}
		if _, err := s.node.RegisterAgent(ctx, a); err != nil {
			return moved, fmt.Errorf("move agent %s: %w", la.AgentID, err)
		}
		moved++
	}
	return moved, nil
}
