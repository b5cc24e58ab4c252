package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/cloud/adminapi"
	"github.com/gatehouse/gatehouse/cloud/internal/server"
	"github.com/gatehouse/gatehouse/cloud/internal/store"
	"github.com/gatehouse/gatehouse/internal/identity"
)

type tenantEnv struct {
	tenant adminapi.Tenant
	site   adminapi.Site
	group  adminapi.Group
	relay  store.Relay
	agent  string
}

// newTenant makes a tenant with a site, a group, an enrolled relay and one
// registered agent, through gatehousectl where it can.
func newTenant(t *testing.T, s *server.Server, name string) tenantEnv {
	t.Helper()
	var e tenantEnv
	e.tenant = jsonOut[adminapi.Tenant](t, s, "tenant", "create", name)
	e.site = jsonOut[adminapi.Site](t, s, "site", "create", "--tenant", e.tenant.ID, "hq")
	e.group = jsonOut[adminapi.Group](t, s, "group", "create", "--tenant", e.tenant.ID, "laptops")
	key := jsonOut[adminapi.RegistrationKey](t, s, "key", "create", "--tenant", e.tenant.ID, "--group", e.group.ID)
	tok := strings.TrimSpace(mustCtl(t, s, "relay", "enroll-token", "--tenant", e.tenant.ID, "--site", e.site.ID))
	var err error
	if e.relay, _, err = s.Store().Enroll(tok, "r1", "dmz1"); err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	e.agent = identity.AgentID(pub)
	if _, err := s.Store().RegisterAgent(e.relay, store.Registration{AgentID: e.agent, PublicKey: pub, RegistrationKey: key.Key, Hostname: "pc1"}); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestControlCommands(t *testing.T) {
	s := startCloud(t)
	a := newTenant(t, s, "acme")
	b := newTenant(t, s, "other")
	T := a.tenant.ID

	// DNS overrides.
	mustCtl(t, s, "dns", "set", "--tenant", T, "--site", a.site.ID, "Cloud.Example.com", "A", "192.0.2.1", "192.0.2.2")
	mustCtl(t, s, "dns", "set", "--tenant", T, "--site", a.site.ID, "cloud.example.com", "aaaa", "2001:db8::1", "--ttl", "300")
	mustCtl(t, s, "dns", "set", "--tenant", T, "--site", a.site.ID, "_gh._udp.example.com", "SRV", "10 5 4433 relay.example.com")
	// Setting the same name and type again replaces its values.
	mustCtl(t, s, "dns", "set", "--tenant", T, "--site", a.site.ID, "cloud.example.com.", "A", "192.0.2.9")
	o := jsonOut[adminapi.DNSOverrides](t, s, "dns", "list", "--tenant", T, "--site", a.site.ID)
	if len(o.Records) != 3 || o.Records[1].Name != "cloud.example.com." || o.Records[1].Type != "A" || strings.Join(o.Records[1].Values, ",") != "192.0.2.9" || o.Records[2].TTL != 300 {
		t.Fatalf("dns list: got %+v", o.Records)
	}
	if out := mustCtl(t, s, "dns", "list", "--tenant", T, "--site", a.site.ID); !strings.Contains(out, "10 5 4433 relay.example.com.") {
		t.Fatalf("dns list text: got %q", out)
	}
	if _, err := ctl(t, s, "dns", "set", "--tenant", T, "--site", a.site.ID, "x.example.com", "A", "not-an-ip"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("dns set bad value: got %v, want a 400", err)
	}
	mustCtl(t, s, "dns", "delete", "--tenant", T, "--site", a.site.ID, "cloud.example.com", "AAAA")
	if o := jsonOut[adminapi.DNSOverrides](t, s, "dns", "list", "--tenant", T, "--site", a.site.ID); len(o.Records) != 2 {
		t.Fatalf("after delete: got %+v", o.Records)
	}
	if _, err := ctl(t, s, "dns", "delete", "--tenant", T, "--site", a.site.ID, "nope.example.com"); err == nil {
		t.Fatal("deleting a missing override: got no error")
	}

	// Tier, allow-list, agent list.
	if g := jsonOut[adminapi.Group](t, s, "group", "set-tier", "--tenant", T, a.group.ID, "server"); g.Tier != "server" {
		t.Fatalf("set-tier: got %+v", g)
	}
	if _, err := ctl(t, s, "group", "set-tier", "--tenant", T, a.group.ID, "desktop"); err == nil {
		t.Fatal("set-tier desktop: got no error")
	}
	al := jsonOut[adminapi.AllowList](t, s, "allow-list", "set", "--tenant", T, "--cidr", "10.0.0.0/8,192.0.2.7", "--name", "updates.example.com")
	if strings.Join(al.CIDRs, " ") != "10.0.0.0/8 192.0.2.7/32" || al.Names[0] != "updates.example.com." {
		t.Fatalf("allow-list set: got %+v", al)
	}
	if out := mustCtl(t, s, "allow-list", "get", "--tenant", T); !strings.Contains(out, "updates.example.com.") {
		t.Fatalf("allow-list get: got %q", out)
	}

	// Actions.
	act := jsonOut[adminapi.Action](t, s, "action", "create", "--tenant", T, "--agent", a.agent, "isolate")
	if act.State != adminapi.ActionPending || act.Type != "isolate" {
		t.Fatalf("action create: got %+v", act)
	}
	agents := jsonOut[[]adminapi.Agent](t, s, "agent", "list", "--tenant", T)
	if len(agents) != 1 || !agents[0].Isolated || agents[0].Tier != "server" {
		t.Fatalf("agent list: got %+v, want isolated in tier server", agents)
	}
	if out := mustCtl(t, s, "agent", "list", "--tenant", T); !strings.Contains(out, "ISOLATED") || !strings.Contains(out, "true") {
		t.Fatalf("agent list text: got %q", out)
	}
	q := jsonOut[adminapi.Action](t, s, "action", "create", "--tenant", T, "--agent", a.agent, "quarantine_file", "--payload", `{"path":"/tmp/evil"}`)
	if _, err := ctl(t, s, "action", "create", "--tenant", T, "--agent", a.agent, "quarantine_file", "--payload", `{"path":"rel"}`); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("bad payload: got %v, want a 400", err)
	}
	bulk := jsonOut[adminapi.BulkActions](t, s, "action", "bulk", "--tenant", T, "--group", a.group.ID, "heartbeat_now")
	if len(bulk.Actions) != 1 || bulk.Actions[0].AgentID != a.agent {
		t.Fatalf("bulk: got %+v", bulk)
	}
	if list := jsonOut[[]adminapi.Action](t, s, "action", "list", "--tenant", T, "--agent", a.agent); len(list) != 3 || list[0].ID != act.ID {
		t.Fatalf("action list: got %+v", list)
	}
	// A relay finishes two of them; wait answers at once, with exit status
	// 1 for the failed one.
	if n, _, err := s.Store().RecordResults(a.relay, []store.ResultInput{
		{ActionID: act.ID, AgentID: a.agent, OK: true, Output: []byte("done")},
		{ActionID: q.ID, AgentID: a.agent, OK: false, Reason: "no such file"},
	}); err != nil || n != 2 {
		t.Fatalf("results: %d, %v", n, err)
	}
	if got := jsonOut[adminapi.Action](t, s, "action", "wait", "--tenant", T, act.ID, "--timeout", "10s"); got.State != adminapi.ActionDone || string(got.Result.Output) != "done" {
		t.Fatalf("wait: got %+v", got)
	}
	if _, err := ctl(t, s, "action", "wait", "--tenant", T, q.ID); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("wait failed action: got %v, want its reason", err)
	}
	if out, err := ctl(t, s, "action", "wait", "--tenant", T, bulk.Actions[0].ID, "--timeout", "50ms", "--interval", "10ms"); err == nil {
		t.Fatalf("wait on a pending action: got %q and no error, want a timeout", out)
	}
	if list := jsonOut[[]adminapi.Action](t, s, "action", "list", "--tenant", T, "--state", "failed"); len(list) != 1 || list[0].ID != q.ID {
		t.Fatalf("action list --state failed: got %+v", list)
	}

	// Tenant b can neither read nor act on tenant a's things.
	B := b.tenant.ID
	for _, args := range [][]string{
		{"dns", "list", "--tenant", B, "--site", a.site.ID},
		{"dns", "set", "--tenant", B, "--site", a.site.ID, "x.example.com", "A", "192.0.2.1"},
		{"group", "set-tier", "--tenant", B, a.group.ID, "server"},
		{"action", "create", "--tenant", B, "--agent", a.agent, "isolate"},
		{"action", "bulk", "--tenant", B, "--group", a.group.ID, "isolate"},
		{"action", "bulk", "--tenant", B, "--agent", a.agent, "isolate"},
		{"action", "get", "--tenant", B, act.ID},
	} {
		if _, err := ctl(t, s, args...); err == nil || !strings.Contains(err.Error(), "404") {
			t.Errorf("%v: got %v, want a 404", args, err)
		}
	}
	if list := jsonOut[[]adminapi.Action](t, s, "action", "list", "--tenant", B, "--agent", a.agent); len(list) != 0 {
		t.Errorf("tenant b listing a's agent: got %d actions", len(list))
	}
	if agents := jsonOut[[]adminapi.Agent](t, s, "agent", "list", "--tenant", B); len(agents) != 1 || agents[0].Isolated || agents[0].Tier != "workstation" {
		t.Errorf("tenant b agents: got %+v", agents)
	}
}
