package state

import (
	"crypto/ed25519"
	"fmt"
	"net/netip"
	"strings"

	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	clusterv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cluster/v1"
)

func ValidateAgent(a *clusterv1.Agent) error {
	if a.AgentId == "" || a.TenantId == "" {
		return fmt.Errorf("agent: agent_id and tenant_id are required")
	}
	if len(a.PublicKey) != 0 && len(a.PublicKey) != ed25519.PublicKeySize {
		return fmt.Errorf("agent %s: public key is %d bytes, want %d", a.AgentId, len(a.PublicKey), ed25519.PublicKeySize)
	}
	return nil
}

func ValidateDNS(d *clusterv1.DnsOverride) error {
	if d.Name == "" || !strings.HasSuffix(d.Name, ".") || d.Name != strings.ToLower(d.Name) {
		return fmt.Errorf("dns override %q: name must be lower case and fully qualified (trailing dot)", d.Name)
	}
	if len(d.Values) == 0 {
		return fmt.Errorf("dns override %s: no values", d.Name)
	}
	for _, v := range d.Values {
		switch d.Type {
		case cloudv1.DnsType_DNS_TYPE_A:
			if ip, err := netip.ParseAddr(v); err != nil || !ip.Is4() {
				return fmt.Errorf("dns override %s A: %q is not an IPv4 address", d.Name, v)
			}
		case cloudv1.DnsType_DNS_TYPE_AAAA:
			if ip, err := netip.ParseAddr(v); err != nil || !ip.Is6() || ip.Is4In6() {
				return fmt.Errorf("dns override %s AAAA: %q is not an IPv6 address", d.Name, v)
			}
		case cloudv1.DnsType_DNS_TYPE_CNAME, cloudv1.DnsType_DNS_TYPE_SRV, cloudv1.DnsType_DNS_TYPE_TXT:
			if v == "" {
				return fmt.Errorf("dns override %s: empty value", d.Name)
			}
		default:
			return fmt.Errorf("dns override %s: unsupported type %v", d.Name, d.Type)
		}
	}
	if d.Type == cloudv1.DnsType_DNS_TYPE_CNAME && len(d.Values) != 1 {
		return fmt.Errorf("dns override %s CNAME: exactly one value, got %d", d.Name, len(d.Values))
	}
	return nil
}

func ValidateAllowList(a *clusterv1.AllowList) error {
	if a.TenantId == "" {
		return fmt.Errorf("allow-list: tenant_id is required")
	}
	for _, c := range a.Cidrs {
		if _, err := netip.ParsePrefix(c); err != nil {
			return fmt.Errorf("allow-list %s: %w", a.TenantId, err)
		}
	}
	return nil
}
