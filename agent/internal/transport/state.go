package transport

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/atomicfile"
	"github.com/gatehouse/gatehouse/internal/identity"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// Registration is what the relay told the agent in its first HelloReply,
// kept in <data_dir>/registration.json. Its presence means "registered":
// the registration key is not sent any more.
type Registration struct {
	AgentID      string    `json:"agent_id"`
	TenantID     string    `json:"tenant_id"`
	GroupID      string    `json:"group_id"`
	RelayID      string    `json:"relay_id"`
	Relays       []string  `json:"relays"`
	RegisteredAt time.Time `json:"registered_at"`
	// SitePins are every relay of the site with its key, as a pinned relay
	// told them: the agent moves to those when its relay dies.
	SitePins []SitePin `json:"site_pins,omitempty"`
}

// SitePin is one relay of the site and the key it must present.
type SitePin struct {
	Addr        string `json:"addr"`
	Fingerprint string `json:"fingerprint"`
}

func sitePinsFrom(pins []*agentv1.RelayPin) []SitePin {
	var out []SitePin
	for _, p := range pins {
		fp, err := identity.NormalizeFingerprint(p.GetFingerprint())
		if err != nil || p.GetAddr() == "" {
			continue // a malformed entry is ignored, never trusted
		}
		out = append(out, SitePin{Addr: p.GetAddr(), Fingerprint: fp})
	}
	return out
}

const (
	registrationFile = "registration.json"
	pinFile          = "relay.pin"
)

// LoadRegistration reads <dataDir>/registration.json; nil when absent.
func LoadRegistration(dataDir string) (*Registration, error) {
	path := filepath.Join(dataDir, registrationFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read registration %s: %w", path, err)
	}
	var r Registration
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read registration %s: %w", path, err)
	}
	return &r, nil
}

func saveRegistration(dataDir string, r *Registration) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dataDir, registrationFile), b, 0o600)
}

func registrationFrom(rep *agentv1.HelloReply, old *Registration, now time.Time) *Registration {
	r := &Registration{
		AgentID: rep.GetAgentId(), TenantID: rep.GetTenantId(), GroupID: rep.GetGroupId(),
		RelayID: rep.GetRelayId(), Relays: rep.GetRelays(), RegisteredAt: now.UTC(),
		SitePins: sitePinsFrom(rep.GetRelayPins()),
	}
	if old != nil && old.AgentID == r.AgentID && old.TenantID == r.TenantID {
		r.RegisteredAt = old.RegisteredAt
	}
	return r
}

func sameRegistration(a, b *Registration) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.AgentID == b.AgentID && a.TenantID == b.TenantID && a.GroupID == b.GroupID &&
		a.RelayID == b.RelayID && strings.Join(a.Relays, ",") == strings.Join(b.Relays, ",") &&
		slices.Equal(a.SitePins, b.SitePins)
}

// loadPin reads the trust-on-first-use pin; "" when absent.
func loadPin(dataDir string) (string, error) {
	path := filepath.Join(dataDir, pinFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read relay pin %s: %w", path, err)
	}
	fp, err := identity.NormalizeFingerprint(string(b))
	if err != nil {
		return "", fmt.Errorf("relay pin %s: %w", path, err)
	}
	return fp, nil
}

func savePin(dataDir, fp string) error {
	return atomicfile.Write(filepath.Join(dataDir, pinFile), []byte(fp+"\n"), 0o600)
}

// spoolFullMark tags the last_error spoolFull sets, so that spoolTook clears
// that one and no other.
const spoolFullMark = "(SPOOL_FULL)"

// spoolFull shows in the status that the relay refuses batches: the agent
// is connected but delivers nothing (its ring keeps the batches).
func (c *Client) spoolFull(relay string, retry time.Duration) {
	msg := fmt.Sprintf("relay %s spool full %s: sending paused, retrying every %s; batches kept in the ring", relay, spoolFullMark, retry)
	c.setStatus(func(s *Status) { s.LastError = msg })
}

// spoolTook clears spoolFull's message once the relay takes batches again.
func (c *Client) spoolTook() {
	c.setStatus(func(s *Status) {
		if strings.Contains(s.LastError, spoolFullMark) {
			s.LastError = ""
		}
	})
}
