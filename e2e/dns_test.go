package e2e

import (
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

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

// digMsg asks server with dig and returns its full output (flags, sections).
func digMsg(server, name, typ string, extra ...string) string {
	host, port, _ := net.SplitHostPort(server)
	args := append([]string{"@" + host, "-p", port, name, typ, "+time=1", "+tries=1", "+nocookie"}, extra...)
	out, _ := exec.Command("dig", args...).Output()
	return string(out)
}

// digFlags is the header flags dig printed ("qr aa rd ra"), "" without an answer.
func digFlags(out string) []string {
	_, rest, ok := strings.Cut(out, ";; flags: ")
	if !ok {
		return nil
	}
	flags, _, _ := strings.Cut(rest, ";")
	return strings.Fields(flags)
}

// authoritativeUpstream is a DNS server on loopback answering every A
// question with 10.1.2.3 as an authoritative, validating server does (AA
// and AD set), like a site's Active Directory DNS; it counts the queries.
func authoritativeUpstream(t *testing.T, hits *atomic.Int64) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		hits.Add(1)
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative, m.AuthenticatedData = true, true
		if q := req.Question[0]; q.Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(10, 1, 2, 3)}}
		}
		_ = w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// The relay's DNS answers as a resolver should: a forwarded answer, fresh
// or from the cache, never claims to be authoritative (only overrides do),
// and an answer fetched with checking disabled is cached apart;
// ANY for an override name gets its A and AAAA records (RFC 8482); and an
// allow-list that opens the resolver to the internet in two /1 halves is
// refused at start with a message naming the entry.
func TestDNSForwardedNotAuthoritativeAndANY(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig not installed (Debian bind9-dnsutils; `make test` installs it as root)")
	}
	s := newSite(t, harness.RelayOptions{DNS: true})
	var hits atomic.Int64
	if err := s.relay.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"refuse_unknown": false, "upstreams": []string{authoritativeUpstream(t, &hits)}} {
		if err := s.relay.SetDNS(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.relay.Restart(s.ctx); err != nil {
		t.Fatal(err)
	}
	_, err := s.cloud.Admin.SetDNSOverrides(s.ctx, s.site.TenantID, s.site.SiteID, []adminapi.DNSRecord{
		{Name: "ingest.cloud.example", Type: "A", Values: []string{"192.0.2.10"}, TTL: 30},
		{Name: "ingest.cloud.example", Type: "AAAA", Values: []string{"2001:db8::10"}, TTL: 30},
	})
	if err != nil {
		t.Fatal(err)
	}
	dnsAddr := s.relay.DNSAddr
	err = harness.WaitFor(s.ctx, 45*time.Second, "override answered", func() (bool, error) {
		return slices.Equal(dig(t, dnsAddr, "ingest.cloud.example", "A"), []string{"192.0.2.10"}), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if f := digFlags(digMsg(dnsAddr, "ingest.cloud.example", "A")); !slices.Contains(f, "aa") {
		t.Errorf("override answer flags %v: want aa (the relay's own data)", f)
	}

	// Forwarded: first from the upstream, then from the cache.
	for i, from := range []string{"upstream", "cache"} {
		out := digMsg(dnsAddr, "host.corp.example", "A", "+noadflag") // dig sets AD by default
		if !strings.Contains(out, "10.1.2.3") {
			t.Fatalf("forwarded answer %d: no 10.1.2.3 in\n%s", i, out)
		}
		f := digFlags(out)
		if slices.Contains(f, "aa") {
			t.Errorf("answer from the %s: flags %v, want no aa (the relay is not authoritative for forwarded names)", from, f)
		}
		if slices.Contains(f, "ad") {
			t.Errorf("answer from the %s: flags %v, want no ad (the client asked for neither AD nor DO)", from, f)
		}
	}
	if n, err := s.relay.Metric(s.ctx, "gatehouse_dns_answers_total", `source="cache"`); err != nil || n < 1 {
		t.Errorf("gatehouse_dns_answers_total{source=cache}: got %v (%v), want >= 1 (the second answer came from the cache)", n, err)
	}

	// An answer fetched with checking disabled (+cd) is not served from the
	// cache to a client that wants it checked.
	before := hits.Load()
	for _, cd := range []string{"+cd", "+nocd"} {
		if out := digMsg(dnsAddr, "cd.corp.example", "A", cd); !strings.Contains(out, "10.1.2.3") {
			t.Fatalf("dig %s: no answer\n%s", cd, out)
		}
	}
	if got := hits.Load() - before; got != 2 {
		t.Errorf("upstream queries for +cd then +nocd: got %d, want 2 (the +nocd client got the +cd answer from the cache)", got)
	}

	// ANY for an override name: its A and AAAA, over UDP and TCP.
	for _, proto := range []string{"+notcp", "+tcp"} {
		got := dig(t, dnsAddr, "ingest.cloud.example", "ANY", proto)
		if want := []string{"192.0.2.10", "2001:db8::10"}; !slices.Equal(got, want) {
			t.Errorf("ANY ingest.cloud.example (%s): got %v, want %v", proto, got, want)
		}
	}

	// 0.0.0.0/1 + 128.0.0.0/1 is 0.0.0.0/0: the relay refuses to start.
	if err := s.relay.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.relay.SetDNS("allow_networks", []string{"0.0.0.0/1", "128.0.0.0/1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.relay.Start(); err != nil {
		t.Fatal(err)
	}
	err = harness.WaitFor(s.ctx, 30*time.Second, "relay to refuse its config and exit", func() (bool, error) {
		return !s.relay.Running(), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if msg := `dns.allow_networks "0.0.0.0/1": an IPv4 prefix shorter than /8`; !s.relay.LogContains(msg) {
		t.Errorf("relay log does not say %q:\n%s", msg, s.relay.Tail(10))
	}
}
