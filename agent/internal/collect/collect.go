// Package collect holds what the agent's collectors share: the Collector
// interface, the policy tier and the sink they write to.
package collect

import (
	"context"
	"fmt"

	"github.com/gatehouse/gatehouse/agent/internal/ring"
)

// Collector is one source of events the agent runs: the security
// collectors (process, netflow, auth, filemod), log tailing and host stats.
// The agent lists them in one place (agent/internal/agent/collectors.go).
type Collector interface {
	// Name names it in logs and status ("process", "logtail").
	Name() string
	// Run collects until ctx ends. An error means it could not run here
	// (no BTF, no fanotify); the agent logs it and the others go on.
	Run(ctx context.Context) error
}

// TierFollower is a collector whose detail follows the policy tier.
type TierFollower interface {
	Collector
	SetTier(t Tier) error
}

// Tier is the policy tier the cloud assigns: it chooses what is collected.
type Tier string

const (
	// TierServer collects process creation and netflow connect only.
	TierServer Tier = "server"
	// TierWorkstation adds process termination and netflow accept/close.
	TierWorkstation Tier = "workstation"
)

// ParseTier accepts "server" and "workstation".
func ParseTier(s string) (Tier, error) {
	switch Tier(s) {
	case TierServer, TierWorkstation:
		return Tier(s), nil
	}
	return "", fmt.Errorf("policy tier %q: want server or workstation", s)
}

// Full reports whether t collects terminations, accepts and closes.
func (t Tier) Full() bool { return t == TierWorkstation }

// Sink takes ECS events (the security lane's batcher).
type Sink interface {
	Add(ev []byte, ck *ring.Checkpoint) error
}

// CString returns b up to its first NUL.
func CString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
