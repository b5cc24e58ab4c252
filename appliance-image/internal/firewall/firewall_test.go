package firewall

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/appliance-image/internal/settings"
)

const sample = `network: {address: 192.0.2.10/24, gateway: 192.0.2.1, dns: [192.0.2.53]}
management: [10.9.0.0/24]
cluster_peers: [192.0.2.11, 192.0.2.12]
ntp: [192.0.2.123]
update: {url: "https://updates.example/channel.json"}
relay:
  cloud: {url: "https://cloud.example:8443", proxy: "http://u:p@192.0.2.3:3128"}
  dns: {enabled: true}
`

func resolver(ctx context.Context, host string) ([]netip.Addr, error) {
	switch host {
	case "cloud.example":
		return []netip.Addr{netip.MustParseAddr("203.0.113.7")}, nil
	case "updates.example":
		return nil, errors.New("no such host")
	}
	return SystemResolver(ctx, host)
}

func renderSample(t *testing.T) Plan {
	t.Helper()
	s, err := settings.Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Render(context.Background(), s, resolver)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

func TestRender(t *testing.T) {
	plan := renderSample(t)
	t.Log("\n" + plan.Ruleset)
	for _, want := range []string{
		"type filter hook input priority filter; policy drop;",
		"type filter hook output priority filter; policy drop;",
		`meta l4proto { tcp, udp } th dport 443 accept comment "agents: QUIC and TLS over TCP"`,
		`meta l4proto { tcp, udp } th dport 53 accept comment "agents: the relay's DNS"`,
		`ip saddr { 192.0.2.11, 192.0.2.12 } tcp dport 7946 accept comment "cluster members"`,
		`ip saddr { 10.9.0.0/24 } tcp dport 9100 accept comment "management: admin port"`,
		`ip daddr 203.0.113.7 tcp dport 8443 accept comment "cloud"`,
		`ip daddr 192.0.2.3 tcp dport 3128 accept comment "proxy"`,
		`ip daddr 192.0.2.53 udp dport 53 accept comment "dns"`,
		`ip daddr 192.0.2.123 udp dport 123 accept comment "ntp"`,
		`ip daddr 192.0.2.12 tcp dport 7946 accept comment "cluster"`,
	} {
		if !strings.Contains(plan.Ruleset, want) {
			t.Errorf("ruleset lacks %q", want)
		}
	}
	if strings.Contains(plan.Ruleset, "dhcp") {
		t.Errorf("static address, yet DHCP is allowed")
	}
	if len(plan.Unresolved) != 1 || plan.Unresolved[0] != "updates.example" {
		t.Errorf("unresolved %v, want [updates.example]", plan.Unresolved)
	}
}

func TestRenderClosedByDefault(t *testing.T) {
	s, err := settings.Parse([]byte("relay: {cloud: {url: \"https://198.51.100.1\"}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Render(context.Background(), s, resolver)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"dport 9100", "dport 7946", "dport 53 accept comment \"agents"} {
		if strings.Contains(plan.Ruleset, bad) {
			t.Errorf("without management, peers or DNS the ruleset still has %q", bad)
		}
	}
	if !strings.Contains(plan.Ruleset, `ip daddr 198.51.100.1 tcp dport 443 accept comment "cloud"`) {
		t.Errorf("cloud rule missing:\n%s", plan.Ruleset)
	}
}

// The kernel's nftables accepts the ruleset (checked, not loaded).
func TestRulesetLoads(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for nft -c")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (nftables)")
	}
	plan := renderSample(t)
	cmd := exec.Command("nft", "-c", "-f", "-")
	cmd.Stdin = strings.NewReader(plan.Ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -c: %v\n%s", err, out)
	}
}
