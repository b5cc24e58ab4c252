// Package allowlist holds the one rule every isolation allow-list obeys,
// wherever it is checked (the cloud's API, the agent before it enforces).
package allowlist

import (
	"fmt"
	"net/netip"
)

// The widest prefixes an isolation allow-list may hold. Two /1s open a host
// to the whole internet as well as a /0 does, so a check for /0 alone is no
// check: nothing wider than an IPv4 /8 or an IPv6 /32 is an exception to
// isolation, it is the end of it.
const (
	MinIPv4Bits = 8
	MinIPv6Bits = 32
)

// CheckPrefix refuses a prefix too wide for an isolation allow-list.
func CheckPrefix(p netip.Prefix) error {
	switch a := p.Addr(); {
	case a.Is4() && p.Bits() < MinIPv4Bits:
		return fmt.Errorf("%s is wider than /%d: an isolated host would reach much of the internet; list the addresses it must still reach", p, MinIPv4Bits)
	case a.Is4In6() && p.Bits() < 96+MinIPv4Bits, a.Is6() && !a.Is4In6() && p.Bits() < MinIPv6Bits:
		return fmt.Errorf("%s is wider than /%d: an isolated host would reach much of the internet; list the addresses it must still reach", p, MinIPv6Bits)
	}
	return nil
}
