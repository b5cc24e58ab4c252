package e2e

import (
	"net"
	"os/exec"
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

	// The service name's SRV lists every live relay; a killed one drops out.
	srvTargets := func(r *harness.Relay) int {
		return len(dig(t, r.DNSAddr, "_gatehouse._udp.relay.gatehouse.internal", "SRV"))
	}
	err := harness.WaitFor(cs.ctx, 30*time.Second, "3 relays under the service name", func() (bool, error) {
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
