package store

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

func version(t *testing.T, s *Store, f fixture) uint64 {
	t.Helper()
	cs, err := s.Control(f.tenant.ID, f.site.ID)
	if err != nil {
		t.Fatal(err)
	}
	return cs.Version
}

func TestControlVersionBumps(t *testing.T) {
	s := openTest(t, t.TempDir(), newClock())
	f := setup(t, s, "acme")
	other := setup(t, s, "other")
	agent := register(t, s, f)
	otherSite, err := s.CreateSite(f.tenant.ID, "branch")
	if err != nil {
		t.Fatal(err)
	}
	var last *Action
	changes := []struct {
		name   string
		change func() error
		bumps  bool
	}{
		{"dns of the site", func() error {
			_, err := s.SetDNSOverrides(f.tenant.ID, f.site.ID, []DNSRecord{{Name: "a.example.com", Type: "A", Values: []string{"192.0.2.1"}}})
			return err
		}, true},
		{"dns of another site of the tenant", func() error {
			_, err := s.SetDNSOverrides(f.tenant.ID, otherSite.ID, []DNSRecord{{Name: "b.example.com", Type: "A", Values: []string{"192.0.2.2"}}})
			return err
		}, false},
		{"tier", func() error { _, err := s.SetGroupTier(f.tenant.ID, f.group.ID, TierServer); return err }, true},
		{"same tier again", func() error { _, err := s.SetGroupTier(f.tenant.ID, f.group.ID, TierServer); return err }, false},
		{"allow-list", func() error { _, err := s.SetAllowList(f.tenant.ID, []string{"10.0.0.0/8"}, nil); return err }, true},
		{"action", func() error {
			a, err := s.CreateAction(f.tenant.ID, agent, ActIsolate, nil)
			last = &a
			return err
		}, true},
		{"delivered", func() error { return s.MarkDelivered(f.relay, []string{last.ID}) }, false},
		{"result", func() error {
			_, _, err := s.RecordResults(f.relay, []ResultInput{{ActionID: last.ID, AgentID: agent, OK: true}})
			return err
		}, true},
		{"same result again", func() error {
			_, _, err := s.RecordResults(f.relay, []ResultInput{{ActionID: last.ID, AgentID: agent, OK: true}})
			return err
		}, false},
		{"key", func() error { _, err := s.CreateRegistrationKey(f.tenant.ID, f.group.ID, 0); return err }, true},
		{"other tenant's allow-list", func() error { _, err := s.SetAllowList(other.tenant.ID, []string{"10.0.0.1"}, nil); return err }, false},
		{"other tenant's tier", func() error { _, err := s.SetGroupTier(other.tenant.ID, other.group.ID, TierServer); return err }, false},
	}
	for _, c := range changes {
		before := version(t, s, f)
		ch := s.ControlChanged()
		if err := c.change(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		after := version(t, s, f)
		if got := after != before; got != c.bumps {
			t.Errorf("%s: version %d -> %d: got changed=%v, want %v", c.name, before, after, got, c.bumps)
		}
		if c.bumps {
			select {
			case <-ch:
			default:
				t.Errorf("%s: ControlChanged not signalled", c.name)
			}
		}
	}
}

func TestControlTenantIsolation(t *testing.T) {
	s := openTest(t, t.TempDir(), newClock())
	a := setup(t, s, "acme")
	b := setup(t, s, "other")
	agentA := register(t, s, a)
	agentB := register(t, s, b)
	if _, err := s.SetDNSOverrides(a.tenant.ID, a.site.ID, []DNSRecord{{Name: "x.example.com", Type: "A", Values: []string{"192.0.2.1"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetAllowList(a.tenant.ID, []string{"10.0.0.0/8"}, []string{"updates.example.com"}); err != nil {
		t.Fatal(err)
	}
	actA, err := s.CreateAction(a.tenant.ID, agentA, ActIsolate, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Every cross-tenant call is refused as not found.
	calls := []struct {
		name string
		call func() error
	}{
		{"set dns of other's site", func() error {
			_, err := s.SetDNSOverrides(b.tenant.ID, a.site.ID, nil)
			return err
		}},
		{"get dns of other's site", func() error { _, err := s.GetDNSOverrides(b.tenant.ID, a.site.ID); return err }},
		{"tier of other's group", func() error { _, err := s.SetGroupTier(b.tenant.ID, a.group.ID, TierServer); return err }},
		{"action on other's agent", func() error { _, err := s.CreateAction(b.tenant.ID, agentA, ActIsolate, nil); return err }},
		{"bulk on other's agent", func() error {
			_, err := s.CreateBulkActions(b.tenant.ID, []string{agentB, agentA}, "", ActHeartbeatNow, nil)
			return err
		}},
		{"bulk on other's group", func() error {
			_, err := s.CreateBulkActions(b.tenant.ID, nil, a.group.ID, ActHeartbeatNow, nil)
			return err
		}},
		{"get other's action", func() error { _, err := s.GetAction(b.tenant.ID, actA.ID); return err }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: got %v, want ErrNotFound", c.name, err)
		}
	}
	// The failed bulk call created nothing (all or none).
	if acts, _ := s.ListActions(b.tenant.ID, "", ""); len(acts) != 0 {
		t.Errorf("tenant b actions after refused bulk: got %d, want 0", len(acts))
	}
	if acts, _ := s.ListActions(b.tenant.ID, agentA, ""); len(acts) != 0 {
		t.Errorf("tenant b listing a's agent: got %d actions, want 0", len(acts))
	}
	// Results from b's relay for a's action are rejected and change nothing.
	n, rej, err := s.RecordResults(b.relay, []ResultInput{{ActionID: actA.ID, AgentID: agentA, OK: true}})
	if err != nil || n != 0 || len(rej) != 1 {
		t.Fatalf("other tenant's result: got %d accepted, %v rejected, %v; want 0, 1", n, rej, err)
	}
	if got, _ := s.GetAction(a.tenant.ID, actA.ID); got.State != ActionPending {
		t.Errorf("action after other tenant's result: got state %s, want pending", got.State)
	}
	// b's relay sees none of a's state.
	cs, err := s.Control(b.tenant.ID, b.site.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.DNS) != 0 || len(cs.AllowList.CIDRs) != 0 || len(cs.AllowList.Names) != 0 || len(cs.Isolation) != 0 || len(cs.Actions) != 0 {
		t.Errorf("tenant b control state: got %+v, want empty", cs)
	}
	if len(cs.Groups) != 1 || cs.Groups[0].ID != b.group.ID || cs.Groups[0].Tier != TierWorkstation {
		t.Errorf("tenant b groups: got %+v, want its one group as workstation", cs.Groups)
	}
	cs, _ = s.Control(a.tenant.ID, a.site.ID)
	if len(cs.DNS) != 1 || len(cs.Isolation) != 1 || !cs.Isolation[0].Isolated || len(cs.Actions) != 1 || cs.AllowList.Names[0] != "updates.example.com." {
		t.Errorf("tenant a control state: got %+v", cs)
	}
}

func TestActionLifecycle(t *testing.T) {
	clk := newClock()
	s := openTest(t, t.TempDir(), clk)
	f := setup(t, s, "acme")
	agent := register(t, s, f)
	isolated := func() bool {
		m, err := s.IsolationStates(f.tenant.ID)
		if err != nil {
			t.Fatal(err)
		}
		return m[agent].Isolated
	}
	iso, err := s.CreateAction(f.tenant.ID, agent, ActIsolate, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if iso.State != ActionPending || !isolated() {
		t.Fatalf("isolate: got state %s isolated %v, want pending and isolated", iso.State, isolated())
	}
	clk.Advance(1)
	q, err := s.CreateAction(f.tenant.ID, agent, ActQuarantineFile, []byte(`{"path":"/tmp/evil"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDelivered(f.relay, []string{iso.ID, q.ID}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetAction(f.tenant.ID, iso.ID); got.State != ActionDelivered || got.RelayID != f.relay.ID || got.DeliveredAt.IsZero() {
		t.Fatalf("after delivery: got %+v", got)
	}
	big := bytes.Repeat([]byte("x"), MaxActionOutput+10)
	n, rej, err := s.RecordResults(f.relay, []ResultInput{
		{ActionID: iso.ID, AgentID: agent, OK: true, Output: big},
		{ActionID: q.ID, AgentID: agent, OK: false, Reason: "no such file"},
		{ActionID: "act_nope", AgentID: agent, OK: true},
		{ActionID: q.ID, AgentID: "someone-else", OK: true},
		{ActionID: "bad/id", AgentID: agent},
	})
	if err != nil || n != 2 || len(rej) != 3 {
		t.Fatalf("results: got %d accepted, %+v rejected, %v; want 2 and 3", n, rej, err)
	}
	got, _ := s.GetAction(f.tenant.ID, iso.ID)
	if got.State != ActionDone || !got.Result.OK || len(got.Result.Output) != MaxActionOutput || !got.Result.OutputTruncated {
		t.Fatalf("isolate result: got state %s result ok=%v len=%d truncated=%v", got.State, got.Result.OK, len(got.Result.Output), got.Result.OutputTruncated)
	}
	if got, _ := s.GetAction(f.tenant.ID, q.ID); got.State != ActionFailed || got.Result.Reason != "no such file" {
		t.Fatalf("quarantine result: got %+v", got)
	}
	// Idempotent: a retry (even with another outcome) is accepted, first wins.
	n, rej, err = s.RecordResults(f.relay, []ResultInput{{ActionID: q.ID, AgentID: agent, OK: true}})
	if err != nil || n != 1 || len(rej) != 0 {
		t.Fatalf("retry: got %d, %v, %v; want 1 accepted", n, rej, err)
	}
	if got, _ := s.GetAction(f.tenant.ID, q.ID); got.State != ActionFailed {
		t.Fatalf("retry changed the state: got %s, want failed", got.State)
	}
	cs, _ := s.Control(f.tenant.ID, f.site.ID)
	if len(cs.Actions) != 0 {
		t.Fatalf("pending after results: got %d, want 0", len(cs.Actions))
	}
	// Isolation stays desired state until cancelled.
	if !isolated() {
		t.Fatal("isolation dropped when the isolate action finished")
	}
	if _, err := s.CreateAction(f.tenant.ID, agent, ActCancelIsolation, nil); err != nil {
		t.Fatal(err)
	}
	if isolated() {
		t.Fatal("cancel_isolation: agent still isolated")
	}
	// Filters.
	for _, tc := range []struct {
		state string
		want  int
	}{{"", 3}, {ActionDone, 1}, {ActionFailed, 1}, {ActionPending, 1}, {ActionDelivered, 0}} {
		acts, err := s.ListActions(f.tenant.ID, agent, tc.state)
		if err != nil || len(acts) != tc.want {
			t.Errorf("list state %q: got %d, %v; want %d", tc.state, len(acts), err, tc.want)
		}
	}
	if acts, _ := s.ListActions(f.tenant.ID, "", ""); !slices.IsSortedFunc(acts, func(a, b Action) int { return strings.Compare(a.ID, b.ID) }) || acts[0].ID != iso.ID {
		t.Errorf("list order: got %v, want oldest first", acts)
	}
	if _, err := s.ListActions(f.tenant.ID, "", "bogus"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bogus state: got %v, want ErrInvalid", err)
	}
}

func TestActionPayloads(t *testing.T) {
	s := openTest(t, t.TempDir(), newClock())
	f := setup(t, s, "acme")
	agent := register(t, s, f)
	cases := []struct {
		typ, payload string
		ok           bool
	}{
		{ActIsolate, "", true},
		{ActIsolate, `{"x":1}`, false},
		{ActQuarantineFile, `{"path":"/etc/x"}`, true},
		{ActQuarantineFile, `{"path":"relative"}`, false},
		{ActQuarantineFile, `{}`, false},
		{ActRestoreFile, `{"quarantine_id":"q1"}`, true},
		{ActRestoreFile, `{}`, false},
		{ActTerminateProcess, `{"pid":4242}`, true},
		{ActTerminateProcess, `{"pid":1}`, false},
		{ActTerminateProcess, `{"pid":"12"}`, false},
		{ActRetrieveFile, `{"path":"/var/log/syslog"}`, true},
		{ActRetrieveSupportBundle, `{}`, true},
		{ActSetProxy, `{"url":"http://proxy:3128"}`, true},
		{ActSetProxy, `{"url":"ftp://proxy"}`, false},
		{ActClearProxy, "", true},
		{ActHeartbeatNow, "", true},
		{"reboot", "", false},
		{ActHeartbeatNow, `{} {}`, false},
		{ActHeartbeatNow, `[]`, false},
	}
	for _, c := range cases {
		_, err := s.CreateAction(f.tenant.ID, agent, c.typ, []byte(c.payload))
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("%s %q: got %v, want ok=%v", c.typ, c.payload, err, c.ok)
		}
	}
	// Bulk by group and by ids.
	agent2 := register(t, s, f)
	acts, err := s.CreateBulkActions(f.tenant.ID, nil, f.group.ID, ActHeartbeatNow, nil)
	if err != nil || len(acts) != 2 {
		t.Fatalf("bulk by group: got %d, %v; want 2", len(acts), err)
	}
	acts, err = s.CreateBulkActions(f.tenant.ID, []string{agent, agent2, agent}, "", ActTerminateProcess, []byte(`{"pid":99}`))
	if err != nil || len(acts) != 2 || string(acts[0].Payload) != `{"pid":99}` {
		t.Fatalf("bulk by ids: got %+v, %v; want 2 (duplicates folded)", acts, err)
	}
	if _, err := s.CreateBulkActions(f.tenant.ID, []string{agent}, f.group.ID, ActHeartbeatNow, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bulk with ids and group: got %v, want ErrInvalid", err)
	}
}

func TestDNSOverrides(t *testing.T) {
	s := openTest(t, t.TempDir(), newClock())
	f := setup(t, s, "acme")
	good := []DNSRecord{
		{Name: "Cloud.Example.COM", Type: "a", Values: []string{"192.0.2.10", "192.0.2.11"}},
		{Name: "cloud.example.com.", Type: "AAAA", Values: []string{"2001:DB8::1"}, TTL: 300},
		{Name: "alias.example.com", Type: "CNAME", Values: []string{"Cloud.Example.com"}},
		{Name: "_gatehouse._udp.example.com", Type: "SRV", Values: []string{"10 5 4433 relay1.example.com"}},
		{Name: "txt.example.com", Type: "TXT", Values: []string{"v=spf1 -all", `with "quotes" ; and semicolons`}},
	}
	o, err := s.SetDNSOverrides(f.tenant.ID, f.site.ID, good)
	if err != nil {
		t.Fatal(err)
	}
	want := []DNSRecord{
		{Name: "_gatehouse._udp.example.com.", Type: "SRV", Values: []string{"10 5 4433 relay1.example.com."}, TTL: 60},
		{Name: "alias.example.com.", Type: "CNAME", Values: []string{"cloud.example.com."}, TTL: 60},
		{Name: "cloud.example.com.", Type: "A", Values: []string{"192.0.2.10", "192.0.2.11"}, TTL: 60},
		{Name: "cloud.example.com.", Type: "AAAA", Values: []string{"2001:db8::1"}, TTL: 300},
		{Name: "txt.example.com.", Type: "TXT", Values: []string{"v=spf1 -all", `with "quotes" ; and semicolons`}, TTL: 60},
	}
	if !slices.EqualFunc(o.Records, want, func(a, b DNSRecord) bool {
		return a.Name == b.Name && a.Type == b.Type && a.TTL == b.TTL && slices.Equal(a.Values, b.Values)
	}) {
		t.Fatalf("canonical records:\ngot  %+v\nwant %+v", o.Records, want)
	}
	if got, _ := s.GetDNSOverrides(f.tenant.ID, f.site.ID); len(got.Records) != len(want) {
		t.Fatalf("get: got %d records, want %d", len(got.Records), len(want))
	}
	bad := []struct {
		name string
		rec  []DNSRecord
	}{
		{"A with v6", []DNSRecord{{Name: "a.example.com", Type: "A", Values: []string{"2001:db8::1"}}}},
		{"AAAA with v4", []DNSRecord{{Name: "a.example.com", Type: "AAAA", Values: []string{"192.0.2.1"}}}},
		{"A garbage", []DNSRecord{{Name: "a.example.com", Type: "A", Values: []string{"999.1.1.1"}}}},
		{"A with comment", []DNSRecord{{Name: "a.example.com", Type: "A", Values: []string{"192.0.2.1 ; x"}}}},
		{"newline", []DNSRecord{{Name: "a.example.com", Type: "A", Values: []string{"192.0.2.1\nb.example.com. 60 IN A 1.2.3.4"}}}},
		{"no values", []DNSRecord{{Name: "a.example.com", Type: "A"}}},
		{"bad type", []DNSRecord{{Name: "a.example.com", Type: "MX", Values: []string{"10 mx.example.com"}}}},
		{"bad name", []DNSRecord{{Name: "a..example.com", Type: "A", Values: []string{"192.0.2.1"}}}},
		{"root name", []DNSRecord{{Name: ".", Type: "A", Values: []string{"192.0.2.1"}}}},
		{"space in name", []DNSRecord{{Name: "a b.example.com", Type: "A", Values: []string{"192.0.2.1"}}}},
		{"two CNAME values", []DNSRecord{{Name: "c.example.com", Type: "CNAME", Values: []string{"a.example.com", "b.example.com"}}}},
		{"CNAME and A", []DNSRecord{
			{Name: "c.example.com", Type: "CNAME", Values: []string{"a.example.com"}},
			{Name: "c.example.com", Type: "A", Values: []string{"192.0.2.1"}}}},
		{"duplicate", []DNSRecord{
			{Name: "c.example.com", Type: "A", Values: []string{"192.0.2.1"}},
			{Name: "C.example.com.", Type: "A", Values: []string{"192.0.2.2"}}}},
		{"SRV short", []DNSRecord{{Name: "_x._tcp.example.com", Type: "SRV", Values: []string{"10 5 relay.example.com"}}}},
		{"SRV port range", []DNSRecord{{Name: "_x._tcp.example.com", Type: "SRV", Values: []string{"10 5 70000 relay.example.com"}}}},
		{"TXT too long", []DNSRecord{{Name: "t.example.com", Type: "TXT", Values: []string{strings.Repeat("x", 256)}}}},
		{"TTL too big", []DNSRecord{{Name: "a.example.com", Type: "A", Values: []string{"192.0.2.1"}, TTL: MaxDNSTTL + 1}}},
	}
	for _, b := range bad {
		if _, err := s.SetDNSOverrides(f.tenant.ID, f.site.ID, b.rec); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", b.name, err)
		}
	}
	if _, err := s.SetDNSOverrides(f.tenant.ID, "st_nope", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown site: got %v, want ErrNotFound", err)
	}
	// Clearing.
	if o, err := s.SetDNSOverrides(f.tenant.ID, f.site.ID, nil); err != nil || len(o.Records) != 0 {
		t.Fatalf("clear: got %+v, %v", o, err)
	}
}

func TestAllowList(t *testing.T) {
	s := openTest(t, t.TempDir(), newClock())
	f := setup(t, s, "acme")
	if al, err := s.GetAllowList(f.tenant.ID); err != nil || len(al.CIDRs) != 0 || al.CIDRs == nil {
		t.Fatalf("unset allow-list: got %+v, %v; want empty lists", al, err)
	}
	al, err := s.SetAllowList(f.tenant.ID, []string{"10.1.2.3/8", "192.0.2.7", "2001:db8::1/32", "10.0.0.0/8"}, []string{"Updates.Example.com", "updates.example.com."})
	if err != nil {
		t.Fatal(err)
	}
	wantC := []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"}
	if !slices.Equal(al.CIDRs, wantC) || !slices.Equal(al.Names, []string{"updates.example.com."}) {
		t.Fatalf("canonical: got %v %v, want %v [updates.example.com.]", al.CIDRs, al.Names, wantC)
	}
	for _, bad := range [][2][]string{{{"10.0.0.0/33"}, nil}, {{"nope"}, nil}, {nil, {"bad name"}}, {{"fe80::1%eth0"}, nil}} {
		if _, err := s.SetAllowList(f.tenant.ID, bad[0], bad[1]); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: got %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := s.SetAllowList("tn_nope", nil, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown tenant: got %v, want ErrNotFound", err)
	}
	if _, err := s.SetGroupTier(f.tenant.ID, f.group.ID, "laptop"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad tier: got %v, want ErrInvalid", err)
	}
}

func TestControlDurable(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s, err := Open(Options{Dir: dir, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	f := setup(t, s, "acme")
	agent := register(t, s, f)
	s.SetDNSOverrides(f.tenant.ID, f.site.ID, []DNSRecord{{Name: "a.example.com", Type: "A", Values: []string{"192.0.2.1"}}})
	s.SetGroupTier(f.tenant.ID, f.group.ID, TierServer)
	act, _ := s.CreateAction(f.tenant.ID, agent, ActIsolate, nil)
	before, _ := s.Control(f.tenant.ID, f.site.ID)
	s.Close()
	s = openTest(t, dir, clk)
	after, err := s.Control(f.tenant.ID, f.site.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.Version != before.Version || len(after.DNS) != 1 || after.Groups[0].Tier != TierServer || len(after.Actions) != 1 || after.Actions[0].ID != act.ID || !after.Isolation[0].Isolated {
		t.Fatalf("after reopen: got %+v, want %+v", after, before)
	}
}
