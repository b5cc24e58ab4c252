package store

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/miekg/dns"

	"github.com/gatehouse/gatehouse/internal/allowlist"
)

// Control state is what a relay's control poll answers: the tenant's keys,
// group tiers, allow-list, isolation intents and unfinished actions, and the
// site's DNS overrides. Its version is 1 + the sum of three counters, each
// bumped in the transaction of the change it counts, so a poll sees a new
// version exactly when something it serves changed:
//
//   c/kv/<tenant>          registration keys (regkeys.go)
//   c/cv/<tenant>          tiers, allow-list, isolation, actions
//   c/sv/<tenant>/<site>   the site's DNS overrides
//
// Keys:
//   al/<tenant>            AllowList

// Policy tiers of a group.
const (
	TierWorkstation = "workstation"
	TierServer      = "server"
)

// Limits of the control state.
const (
	MaxAllowListEntries = 1000
)

// ControlChanged returns a channel closed at the next control change (any
// tenant or site).
func (s *Store) ControlChanged() <-chan struct{} {
	s.changedMu.Lock()
	defer s.changedMu.Unlock()
	return s.changed
}

func (s *Store) notify() {
	s.changedMu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.changedMu.Unlock()
}

func bumpTenant(txn *badger.Txn, tenant string) error {
	_, err := addCounter(txn, k("c", "cv", tenant), 1)
	return err
}

func bumpSite(txn *badger.Txn, tenant, site string) error {
	_, err := addCounter(txn, k("c", "sv", tenant, site), 1)
	return err
}

func controlVersion(txn *badger.Txn, tenant, site string) (uint64, error) {
	var sum uint64
	for _, key := range [][]byte{k("c", "kv", tenant), k("c", "cv", tenant), k("c", "sv", tenant, site)} {
		v, err := getCounter(txn, key)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum + 1, nil
}

// ControlState is the control state of one site of a tenant.
type ControlState struct {
	Version   uint64
	Keys      []RegistrationKey
	DNS       []DNSRecord
	Groups    []Group // Tier filled in (workstation by default)
	AllowList AllowList
	Isolation []Isolation
	Actions   []Action // unfinished, oldest first
}

// Control returns the control state a relay of tenant's site is served, read
// in one transaction so the version matches the contents.
func (s *Store) Control(tenant, site string) (ControlState, error) {
	var cs ControlState
	err := s.view(func(txn *badger.Txn) (err error) {
		if cs.Version, err = controlVersion(txn, tenant, site); err != nil {
			return err
		}
		if cs.Keys, err = listJSON[RegistrationKey](txn, prefix("k", tenant)); err != nil {
			return err
		}
		if cs.DNS, err = getDNS(txn, tenant, site); err != nil {
			return err
		}
		if cs.Groups, err = listJSON[Group](txn, prefix("g", tenant)); err != nil {
			return err
		}
		for i := range cs.Groups {
			cs.Groups[i].Tier = tierOrDefault(cs.Groups[i].Tier)
		}
		if cs.AllowList, err = getAllowList(txn, tenant); err != nil {
			return err
		}
		if cs.Isolation, err = listJSON[Isolation](txn, prefix("iso", tenant)); err != nil {
			return err
		}
		cs.Actions, err = pendingActions(txn, tenant)
		return err
	})
	if err != nil {
		return ControlState{}, fmt.Errorf("control state %s/%s: %w", tenant, site, err)
	}
	return cs, nil
}

func tierOrDefault(t string) string {
	if t == "" {
		return TierWorkstation
	}
	return t
}

// SetGroupTier sets a group's policy tier ("server" or "workstation").
func (s *Store) SetGroupTier(tenant, group, tier string) (Group, error) {
	if tier != TierServer && tier != TierWorkstation {
		return Group{}, fmt.Errorf("%w: tier %q: want %s or %s", ErrInvalid, tier, TierServer, TierWorkstation)
	}
	var g Group
	err := s.update(func(txn *badger.Txn) error {
		if err := getJSON(txn, k("g", tenant, group), &g); err != nil {
			return fmt.Errorf("group %q: %w", group, err)
		}
		if tierOrDefault(g.Tier) == tier {
			g.Tier = tier
			return nil
		}
		g.Tier = tier
		if err := setJSON(txn, k("g", tenant, group), g); err != nil {
			return err
		}
		return bumpTenant(txn, tenant)
	})
	if err != nil {
		return Group{}, fmt.Errorf("set tier: %w", err)
	}
	s.notify()
	return g, nil
}

// GetGroup returns a tenant's group with its tier filled in.
func (s *Store) GetGroup(tenant, group string) (Group, error) {
	var g Group
	err := s.view(func(txn *badger.Txn) error { return getJSON(txn, k("g", tenant, group), &g) })
	if err != nil {
		return Group{}, fmt.Errorf("group %q: %w", group, err)
	}
	g.Tier = tierOrDefault(g.Tier)
	return g, nil
}

// SetAllowList replaces a tenant's allow-list after validating and
// canonicalising it: CIDRs as masked prefixes (a bare address is a /32 or
// /128), names fully qualified and lower case. Duplicates are dropped.
func (s *Store) SetAllowList(tenant string, cidrs, names []string) (AllowList, error) {
	al, err := canonicalAllowList(cidrs, names)
	if err != nil {
		return AllowList{}, err
	}
	al.TenantID, al.UpdatedAt = tenant, s.now().UTC()
	err = s.update(func(txn *badger.Txn) error {
		if err := tenantExists(txn, tenant); err != nil {
			return err
		}
		if err := setJSON(txn, k("al", tenant), al); err != nil {
			return err
		}
		return bumpTenant(txn, tenant)
	})
	if err != nil {
		return AllowList{}, fmt.Errorf("set allow-list: %w", err)
	}
	s.notify()
	return al, nil
}

// GetAllowList returns a tenant's allow-list (empty when never set).
func (s *Store) GetAllowList(tenant string) (AllowList, error) {
	var al AllowList
	err := s.view(func(txn *badger.Txn) (err error) {
		if err := tenantExists(txn, tenant); err != nil {
			return err
		}
		al, err = getAllowList(txn, tenant)
		return err
	})
	if err != nil {
		return AllowList{}, fmt.Errorf("allow-list: %w", err)
	}
	return al, nil
}

func getAllowList(txn *badger.Txn, tenant string) (AllowList, error) {
	al := AllowList{TenantID: tenant, CIDRs: []string{}, Names: []string{}}
	err := getJSON(txn, k("al", tenant), &al)
	if err == ErrNotFound {
		err = nil
	}
	return al, err
}

// CheckAllowList validates an allow-list and returns it canonical.
func CheckAllowList(cidrs, names []string) (AllowList, error) {
	return canonicalAllowList(cidrs, names)
}

func canonicalAllowList(cidrs, names []string) (AllowList, error) {
	if len(cidrs) > MaxAllowListEntries || len(names) > MaxAllowListEntries {
		return AllowList{}, fmt.Errorf("%w: allow-list: at most %d cidrs and %d names", ErrInvalid, MaxAllowListEntries, MaxAllowListEntries)
	}
	al := AllowList{CIDRs: []string{}, Names: []string{}}
	for _, c := range cidrs {
		p, err := parsePrefix(c)
		if err != nil {
			return AllowList{}, err
		}
		if err := allowlist.CheckPrefix(p); err != nil {
			return AllowList{}, fmt.Errorf("%w: allow-list cidr: %v", ErrInvalid, err)
		}
		al.CIDRs = append(al.CIDRs, p.String())
	}
	for _, n := range names {
		cn, err := canonicalName(n)
		if err != nil {
			return AllowList{}, err
		}
		al.Names = append(al.Names, cn)
	}
	slices.Sort(al.CIDRs)
	al.CIDRs = slices.Compact(al.CIDRs)
	slices.Sort(al.Names)
	al.Names = slices.Compact(al.Names)
	return al, nil
}

func parsePrefix(c string) (netip.Prefix, error) {
	c = strings.TrimSpace(c)
	if !strings.Contains(c, "/") {
		a, err := netip.ParseAddr(c)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%w: cidr %q: want an address or a prefix", ErrInvalid, c)
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(c)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: cidr %q: %v", ErrInvalid, c, err)
	}
	return p.Masked(), nil
}

// canonicalName checks a DNS name and returns it lower case and fully
// qualified. The root and names with control characters or spaces are refused.
func canonicalName(n string) (string, error) {
	if n == "" || n == "." || strings.ContainsFunc(n, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '\\' }) {
		return "", fmt.Errorf("%w: name %q: want a domain name", ErrInvalid, n)
	}
	if _, ok := dns.IsDomainName(n); !ok {
		return "", fmt.Errorf("%w: name %q: want a domain name", ErrInvalid, n)
	}
	return dns.CanonicalName(n), nil
}

// controlClock is the unix-ms form the wire uses.
func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
