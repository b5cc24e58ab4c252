package relayapi

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/cloud/internal/store"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

func (e *env) registerAgent(t *testing.T) string {
	t.Helper()
	id, pub := newAgentKey(t)
	var r cloudv1.RegisterAgentResponse
	if code := e.call(t, "/v1/agents/register", e.cred, &cloudv1.RegisterAgentRequest{AgentId: id, PublicKey: pub, RegistrationKey: e.key.Key}, &r); code != 200 {
		t.Fatalf("register: got %d", code)
	}
	return id
}

func (e *env) poll(t *testing.T, since uint64, waitMs int64) *cloudv1.ControlPollResponse {
	t.Helper()
	var r cloudv1.ControlPollResponse
	if code := e.call(t, "/v1/control/poll", e.cred, &cloudv1.ControlPollRequest{SinceVersion: since, WaitMs: waitMs}, &r); code != 200 {
		t.Fatalf("poll: got %d", code)
	}
	return &r
}

func TestPollControlState(t *testing.T) {
	e := newEnv(t, 0, 0)
	agent := e.registerAgent(t)
	r0 := e.poll(t, 0, 0)
	if len(r0.GroupPolicies) != 1 || r0.GroupPolicies[0].GroupId != e.group.ID || r0.GroupPolicies[0].Tier != "workstation" {
		t.Fatalf("group policies: got %v, want the group as workstation", r0.GroupPolicies)
	}
	if r0.AllowList == nil || len(r0.DnsOverrides)+len(r0.Isolation)+len(r0.Actions) != 0 {
		t.Fatalf("fresh state: got %v", r0)
	}

	// A change wakes a waiting poll.
	done := make(chan *cloudv1.ControlPollResponse, 1)
	go func() {
		var r cloudv1.ControlPollResponse
		b, _ := proto.Marshal(&cloudv1.ControlPollRequest{SinceVersion: r0.Version, WaitMs: 10000})
		req, _ := http.NewRequest("POST", e.srv.URL+"/v1/control/poll", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+e.cred)
		if resp, err := e.client.Do(req); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			proto.Unmarshal(body, &r)
		}
		done <- &r
	}()
	if _, err := e.st.SetDNSOverrides(e.tenant.ID, e.site.ID, []store.DNSRecord{
		{Name: "cloud.example.com", Type: "A", Values: []string{"192.0.2.1"}},
		{Name: "_gh._udp.example.com", Type: "SRV", Values: []string{"1 1 4433 relay.example.com"}, TTL: 30},
	}); err != nil {
		t.Fatal(err)
	}
	r1 := <-done
	if r1.Version == r0.Version || len(r1.DnsOverrides) != 2 {
		t.Fatalf("woken poll: got version %d (was %d), %d dns overrides; want a new version and 2", r1.Version, r0.Version, len(r1.DnsOverrides))
	}
	srv := r1.DnsOverrides[0]
	if srv.Name != "_gh._udp.example.com." || srv.Type != cloudv1.DnsType_DNS_TYPE_SRV || srv.Values[0] != "1 1 4433 relay.example.com." || srv.TtlSeconds != 30 {
		t.Fatalf("srv override: got %v", srv)
	}

	e.st.SetGroupTier(e.tenant.ID, e.group.ID, store.TierServer)
	e.st.SetAllowList(e.tenant.ID, []string{"10.0.0.0/8"}, []string{"updates.example.com"})
	act, err := e.st.CreateAction(e.tenant.ID, agent, store.ActIsolate, nil)
	if err != nil {
		t.Fatal(err)
	}
	r2 := e.poll(t, r1.Version, 0)
	switch {
	case r2.GroupPolicies[0].Tier != "server":
		t.Errorf("tier: got %v, want server", r2.GroupPolicies)
	case len(r2.AllowList.Cidrs) != 1 || r2.AllowList.Names[0] != "updates.example.com.":
		t.Errorf("allow-list: got %v", r2.AllowList)
	case len(r2.Isolation) != 1 || r2.Isolation[0].AgentId != agent || !r2.Isolation[0].Isolated:
		t.Errorf("isolation: got %v", r2.Isolation)
	case len(r2.Actions) != 1 || r2.Actions[0].ActionId != act.ID || r2.Actions[0].GetAction().GetType() != agentv1.ActionType_ACTION_TYPE_ISOLATE || r2.Actions[0].GetAction().GetIsolate() == nil:
		t.Errorf("actions: got %v", r2.Actions)
	}
	if got, _ := e.st.GetAction(e.tenant.ID, act.ID); got.State != store.ActionDelivered {
		t.Errorf("after poll: action state %s, want %s", got.State, store.ActionDelivered)
	}
	if got := counterValue(e.metrics.ActionsDelivered); got != 1 {
		t.Errorf("delivered metric: got %v, want 1", got)
	}
	// Marking delivery does not change the version: an idle poll stays put.
	if r3 := e.poll(t, r2.Version, 1); r3.Version != r2.Version || len(r3.Actions) != 1 {
		t.Errorf("idle poll: got version %d with %d actions, want %d with 1", r3.Version, len(r3.Actions), r2.Version)
	}

	// Results: accepted, idempotent, and the action leaves the poll.
	results := func(rs ...*cloudv1.ActionResult) *cloudv1.ActionResultsAck {
		t.Helper()
		var ack cloudv1.ActionResultsAck
		if code := e.call(t, "/v1/control/results", e.cred, &cloudv1.ActionResults{Results: rs}, &ack); code != 200 {
			t.Fatalf("results: got %d", code)
		}
		return &ack
	}
	ack := results(&cloudv1.ActionResult{ActionId: act.ID, AgentId: agent, Ok: true, Output: []byte("isolated")})
	if ack.Accepted != 1 || len(ack.Rejected) != 0 {
		t.Fatalf("results: got %v, want 1 accepted", ack)
	}
	if ack := results(&cloudv1.ActionResult{ActionId: act.ID, AgentId: agent, Ok: false}); ack.Accepted != 1 {
		t.Fatalf("results retry: got %v, want 1 accepted", ack)
	}
	got, _ := e.st.GetAction(e.tenant.ID, act.ID)
	if got.State != store.ActionDone || string(got.Result.Output) != "isolated" {
		t.Fatalf("action after results: got %+v", got)
	}
	r4 := e.poll(t, r2.Version, 0)
	if r4.Version == r2.Version || len(r4.Actions) != 0 || !r4.Isolation[0].Isolated {
		t.Fatalf("poll after result: got %v, want no actions and the agent still isolated", r4)
	}

	// Zstd bodies are accepted for results too.
	b, _ := proto.Marshal(&cloudv1.ActionResults{Results: []*cloudv1.ActionResult{{ActionId: act.ID, AgentId: agent, Ok: true}}})
	if code, body := e.post(t, "/v1/control/results", e.cred, "zstd", zstdBytes(t, b)); code != 200 {
		t.Fatalf("zstd results: got %d %q", code, body)
	}
	if code, _ := e.post(t, "/v1/control/results", e.cred, "", []byte{0xff}); code != 400 {
		t.Fatalf("bad results body: got %d, want 400", code)
	}
	if code, _ := e.post(t, "/v1/control/results", "", "", b); code != 401 {
		t.Fatalf("results without auth: got %d, want 401", code)
	}
}

func TestResultsOtherTenantRefused(t *testing.T) {
	e := newEnv(t, 0, 0)
	// Another tenant with its own relay, agent and action.
	tn, _ := e.st.CreateTenant("other")
	g, _ := e.st.CreateGroup(tn.ID, "g")
	site, _ := e.st.CreateSite(tn.ID, "s")
	key, _ := e.st.CreateRegistrationKey(tn.ID, g.ID, 0)
	tok, _, _ := e.st.CreateEnrollmentToken(tn.ID, site.ID, 0)
	relay, _, err := e.st.Enroll(tok, "r", "h")
	if err != nil {
		t.Fatal(err)
	}
	id, pub := newAgentKey(t)
	if _, err := e.st.RegisterAgent(relay, store.Registration{AgentID: id, PublicKey: pub, RegistrationKey: key.Key}); err != nil {
		t.Fatal(err)
	}
	act, err := e.st.CreateAction(tn.ID, id, store.ActHeartbeatNow, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Our relay never sees it and cannot finish it.
	if r := e.poll(t, 0, 0); len(r.Actions) != 0 || len(r.Isolation) != 0 {
		t.Fatalf("poll leaked another tenant's actions: %v", r.Actions)
	}
	var ack cloudv1.ActionResultsAck
	if code := e.call(t, "/v1/control/results", e.cred, &cloudv1.ActionResults{Results: []*cloudv1.ActionResult{{ActionId: act.ID, AgentId: id, Ok: true}}}, &ack); code != 200 {
		t.Fatalf("results: got %d", code)
	}
	if ack.Accepted != 0 || len(ack.Rejected) != 1 || ack.Rejected[0].ActionId != act.ID {
		t.Fatalf("other tenant's result: got %v, want it rejected", &ack)
	}
	if got, _ := e.st.GetAction(tn.ID, act.ID); got.State != store.ActionPending {
		t.Fatalf("other tenant's action: got state %s, want pending", got.State)
	}
	if got := counterValue(e.metrics.ActionResults.WithLabelValues("rejected")); got != 1 {
		t.Errorf("rejected metric: got %v, want 1", got)
	}
}
