// Package collect holds what the security collectors (process, netflow,
// auth, filemod) share: the policy tier and the sink they write to.
package collect

import (
	"fmt"

	"github.com/gatehouse/gatehouse/agent/internal/ring"
)

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
