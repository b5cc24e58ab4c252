package isolate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/internal/atomicfile"
)

// Policy is the desired isolation state of the host.
type Policy struct {
	Isolated bool `json:"isolated"`
	// AllowCIDRs and AllowNames are the tenant's allow-list; they are
	// enforced only while Isolated. The site's relays, the DNS servers and
	// loopback are always allowed on top of them.
	AllowCIDRs []netip.Prefix `json:"allow_cidrs,omitempty"`
	AllowNames []string       `json:"allow_names,omitempty"`
}

// Normalize masks the prefixes, lower-cases the names (no trailing dot),
// sorts and de-duplicates both.
func (p Policy) Normalize() Policy {
	out := Policy{Isolated: p.Isolated}
	for _, c := range p.AllowCIDRs {
		if c.IsValid() {
			out.AllowCIDRs = append(out.AllowCIDRs, c.Masked())
		}
	}
	slices.SortFunc(out.AllowCIDRs, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	out.AllowCIDRs = slices.Compact(out.AllowCIDRs)
	for _, n := range p.AllowNames {
		n = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
		if n != "" {
			out.AllowNames = append(out.AllowNames, n)
		}
	}
	slices.Sort(out.AllowNames)
	out.AllowNames = slices.Compact(out.AllowNames)
	return out
}

// stateFile is isolation.json in the agent's data dir: the desired state,
// written before the kernel is changed so a crash in between converges at
// the next start.
type stateFile struct {
	Policy
	// Relays are the site's relay addresses last known, so a restart with
	// the relays unreachable still allows them.
	Relays []string `json:"relays,omitempty"`
}

func readState(path string) (stateFile, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return stateFile{}, false, nil
	}
	if err != nil {
		return stateFile{}, false, fmt.Errorf("read isolation state %s: %w", path, err)
	}
	var s stateFile
	if err := json.Unmarshal(b, &s); err != nil {
		return stateFile{}, false, fmt.Errorf("decode isolation state %s: %w", path, err)
	}
	return s, true, nil
}

func writeState(path string, s stateFile) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode isolation state: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write isolation state %s: %w", path, err)
	}
	return nil
}
