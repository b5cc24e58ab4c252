package spool

import (
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

// The control poll's group policies are stored with the key hashes (the
// whole ControlPollResponse, PutKeyHashes) and kept in memory here, so a
// relay that restarts while the cloud is away still tells agents their
// group's tier, and heartbeats never read the disk.

// GroupTier returns the policy tier ("server" or "workstation") of groupID
// from the last control poll, or "" when the relay does not know it.
func (s *Spool) GroupTier(groupID string) string {
	s.tiersMu.RLock()
	defer s.tiersMu.RUnlock()
	return s.tiers[groupID]
}

// setTiers replaces the in-memory group tiers with resp's.
func (s *Spool) setTiers(resp *cloudv1.ControlPollResponse) {
	m := make(map[string]string, len(resp.GetGroupPolicies()))
	for _, p := range resp.GetGroupPolicies() {
		if p.GetGroupId() != "" && p.GetTier() != "" {
			m[p.GetGroupId()] = p.GetTier()
		}
	}
	s.tiersMu.Lock()
	s.tiers = m
	s.tiersMu.Unlock()
}

// loadTiers fills the in-memory tiers from the stored control state.
func (s *Spool) loadTiers() error {
	resp, err := s.KeyHashes()
	if err != nil {
		return err
	}
	s.setTiers(resp)
	return nil
}
