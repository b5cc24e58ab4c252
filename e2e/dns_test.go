package e2e

import (
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/cloud/adminapi"
	"github.com/gatehouse/gatehouse/e2e/harness"
)

// dig asks server (host:port) with Debian's dig and returns the +short answer lines, sorted.
func dig(t *testing.T, server, name, typ string, extra ...string) []string {
	t.Helper()
	host, port, _ := net.SplitHostPort(server)
	args := append([]string{"@" + host, "-p", port, name, typ, "+short", "+time=1", "+tries=1"}, extra...)
	out, err := exec.Command("dig", args...).Output()
	if err != nil {
		return nil
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && !strings.HasPrefix(l, ";;") {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return lines
}

// digStatus is the response code dig reports for name's A record.
func digStatus(server, name string) string {
	host, port, _ := net.SplitHostPort(server)
	out, _ := exec.Command("dig", "@"+host, "-p", port, name, "A", "+time=1", "+tries=1").Output()
	_, rest, ok := strings.Cut(string(out), "status: ")
	if !ok {
		return ""
	}
	status, _, _ := strings.Cut(rest, ",")
	return status
}

// Overrides set through the cloud's API reach every relay of the site
// through the control poll and the cluster's Raft state, answered over UDP
// and TCP for every record type; a change is seen on every node without a
// restart; the service name drops a dead relay within seconds.
func TestDNSOverridesFromCloudOnEveryNode(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig not installed (Debian bind9-dnsutils; `make test` installs it as root)")
	}
	cs := newClusterSiteWith(t, 3, harness.RelayOptions{DNS: true})
	set := func(a string) {
		t.Helper()
		_, err := cs.cloud.Admin.SetDNSOverrides(cs.ctx, cs.site.TenantID, cs.site.SiteID, []adminapi.DNSRecord{
			{Name: "ingest.cloud.example", Type: "A", Values: []string{a}, TTL: 30},
			{Name: "ingest.cloud.example", Type: "AAAA", Values: []string{"2001:db8::10"}, TTL: 30},
			{Name: "api.cloud.example", Type: "CNAME", Values: []string{"ingest.cloud.example."}, TTL: 30},
			{Name: "_ingest._tcp.cloud.example", Type: "SRV", Values: []string{"10 5 443 ingest.cloud.example."}, TTL: 30},
			{Name: "cloud.example", Type: "TXT", Values: []string{"gatehouse-site=hq"}, TTL: 30},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	want := func(r *harness.Relay, name, typ string, wantLines []string, extra ...string) {
		t.Helper()
		err := harness.WaitFor(cs.ctx, 45*time.Second, r.Name+" answers "+name+" "+typ, func() (bool, error) {
			got := dig(t, r.DNSAddr, name, typ, extra...)
			return slices.Equal(got, wantLines), nil
		})
		if err != nil {
			t.Fatalf("%v: got %v, want %v", err, dig(t, r.DNSAddr, name, typ, extra...), wantLines)
		}
	}
	set("192.0.2.10")
	for _, r := range cs.relays {
		want(r, "ingest.cloud.example", "A", []string{"192.0.2.10"})
		want(r, "ingest.cloud.example", "A", []string{"192.0.2.10"}, "+tcp")
		want(r, "ingest.cloud.example", "AAAA", []string{"2001:db8::10"})
		want(r, "api.cloud.example", "A", []string{"192.0.2.10", "ingest.cloud.example."})
		want(r, "_ingest._tcp.cloud.example", "SRV", []string{"10 5 443 ingest.cloud.example."})
		want(r, "cloud.example", "TXT", []string{`"gatehouse-site=hq"`})
	}
	set("192.0.2.99")
	for _, r := range cs.relays {
		want(r, "ingest.cloud.example", "A", []string{"192.0.2.99"})
	}

	// Strict isolation DNS: once the agent on 127.0.0.1 is isolated, that
	// address resolves only its tenant's allow-list (NXDOMAIN for the rest);
	// released, everything again. The agent's own enforcement points at a
	// cgroup that does not exist, so this test never isolates the host.
	fp, err := cs.relays[0].Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cs.dir, "agent-iso")
	ag, err := harness.StartAgent(cs.ctx, cs.bin, dir, harness.AgentOptions{
		Relays: []string{cs.relays[0].Addr}, Fingerprint: fp, RegistrationKey: cs.site.RegistrationKey,
		LogGlobs:  []string{filepath.Join(dir, "logs", "*.log")},
		Isolation: map[string]any{"cgroup": "/nonexistent/gatehouse-test-cgroup"},
	})
	if ag != nil && ag.Proc != nil {
		cs.procs = append(cs.procs, ag.Proc)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := ag.WaitConnected(cs.ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	ast, _ := ag.Status()
	if _, err := cs.cloud.Admin.SetAllowList(cs.ctx, cs.site.TenantID, nil, []string{"ingest.cloud.example."}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.cloud.Admin.CreateAction(cs.ctx, cs.site.TenantID, ast.AgentID, "isolate", json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	// Overrides (how an isolated host reaches Gatehouse) stay answered; any
	// other name is NXDOMAIN for it, where others get REFUSED (no upstreams).
	wantStatus := func(name, status string) {
		t.Helper()
		err := harness.WaitFor(cs.ctx, 45*time.Second, name+" "+status, func() (bool, error) {
			return digStatus(cs.relays[0].DNSAddr, name) == status, nil
		})
		if err != nil {
			t.Fatalf("%v: got %s", err, digStatus(cs.relays[0].DNSAddr, name))
		}
	}
	wantStatus("elsewhere.example", "NXDOMAIN")
	want(cs.relays[0], "ingest.cloud.example", "A", []string{"192.0.2.99"})
	if _, err := cs.cloud.Admin.CreateAction(cs.ctx, cs.site.TenantID, ast.AgentID, "cancel_isolation", json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	wantStatus("elsewhere.example", "REFUSED")

	// The service name's SRV lists every live relay; a killed one drops out.
	srvTargets := func(r *harness.Relay) int {
		return len(dig(t, r.DNSAddr, "_gatehouse._udp.relay.gatehouse.internal", "SRV"))
	}
	err = harness.WaitFor(cs.ctx, 30*time.Second, "3 relays under the service name", func() (bool, error) {
		return srvTargets(cs.relays[0]) == 3, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.relays[2].Kill(); err != nil {
		t.Fatal(err)
	}
	err = harness.WaitFor(cs.ctx, 15*time.Second, "the dead relay gone from the service name", func() (bool, error) {
		return srvTargets(cs.relays[0]) == 2, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
