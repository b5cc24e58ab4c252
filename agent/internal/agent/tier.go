package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/gatehouse/gatehouse/agent/internal/collect"
	"github.com/gatehouse/gatehouse/internal/atomicfile"
)

// TierFile (in data_dir) keeps the last policy tier the cloud sent, so a
// restarted agent starts in it rather than in the config's policy_tier.
const TierFile = "policy_tier"

// loadTier returns the persisted tier, or "" when there is none. A
// damaged file is an error (the caller logs it and uses the config).
func loadTier(dataDir string) (collect.Tier, error) {
	p := filepath.Join(dataDir, TierFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read policy tier %s: %w", p, err)
	}
	t, err := collect.ParseTier(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("read policy tier %s: %w", p, err)
	}
	return t, nil
}

// onPolicyTier is the transport's callback for the tier in every
// HelloReply and HeartbeatReply: a tier different from the current one is
// applied at once (no restart) and persisted.
func (a *Agent) onPolicyTier(tier string) {
	t, err := collect.ParseTier(tier)
	if err != nil {
		a.log.Warn("relay sent an unknown policy tier, keeping the current one", "tier", tier, "current", a.PolicyTier())
		return
	}
	a.tierMu.Lock()
	defer a.tierMu.Unlock()
	if t == a.tier {
		return
	}
	if err := a.coll.SetTier(string(t)); err != nil {
		// Collectors that could switch did; the next heartbeat retries.
		a.log.Error("apply policy tier from the cloud", "tier", t, "err", err)
		return
	}
	a.log.Info("policy tier changed by the cloud", "from", a.tier, "to", t)
	a.tier = t
	p := filepath.Join(a.cfg.DataDir, TierFile)
	if err := atomicfile.Write(p, []byte(string(t)+"\n"), 0o644); err != nil {
		a.log.Warn("persist policy tier", "path", p, "err", err)
	}
	a.signal()
}

// PolicyTier is the tier the collectors run in now.
func (a *Agent) PolicyTier() string {
	a.tierMu.Lock()
	defer a.tierMu.Unlock()
	return string(a.tier)
}
