package server

import (
	"context"
	"time"
)

// SuccessorInterval is how often the registration key successor job runs.
const SuccessorInterval = time.Hour

// runSuccessors gives keys near expiry their successors, at start and then
// every SuccessorInterval of the injected clock, until ctx ends.
func (s *Server) runSuccessors(ctx context.Context) {
	for {
		made, err := s.store.EnsureSuccessors()
		if err != nil {
			s.log.Error("registration key successors", "err", err)
		}
		for _, k := range made {
			s.log.Info("registration key successor created", "tenant", k.TenantID, "group", k.GroupID,
				"key_id", k.ID, "successor_of", k.SuccessorOf, "expires_at", k.ExpiresAt)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(SuccessorInterval):
		}
	}
}
