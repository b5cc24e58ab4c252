package sitestate_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/action"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/sitestate"
	"github.com/gatehouse/gatehouse/relay/internal/sitestate/sitestatetest"
	"github.com/gatehouse/gatehouse/relay/internal/spool"
)

// An old spool's registry moves into the site state: agents stay
// admitted, an offline registration still reaches the cloud (it keeps its
// key), the cached key hashes and tiers serve while the cloud is away; a
// second import changes nothing.
func TestImportLegacy(t *testing.T) {
	s := sitestatetest.New(t, sitestatetest.Tenant("t1"))
	at := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	legacy := spool.LegacyRegistry{
		Agents: []spool.LegacyAgent{
			{AgentID: "a-on", TenantID: "t1", GroupID: "g1", RegisteredAt: at},
			{AgentID: "a-off", TenantID: "t1", GroupID: "g2", RegisteredAt: at, Pending: true,
				Request: &cloudv1.RegisterAgentRequest{AgentId: "a-off", RegistrationKey: "k", Hostname: "h"}},
			{AgentID: "no-tenant"},
		},
		Control: &cloudv1.ControlPollResponse{Version: 5,
			RegistrationKeys: []*cloudv1.RegistrationKeyHash{{Sha256: []byte("x"), TenantId: "t1"}},
			GroupPolicies:    []*cloudv1.GroupPolicy{{GroupId: "g1", Tier: "server"}}},
	}
	n, err := s.ImportLegacy(context.Background(), legacy)
	if err != nil || n != 2 {
		t.Fatalf("import: got %d, %v; want 2 agents moved", n, err)
	}
	on, err := s.Agent("a-on")
	if err != nil || on.Pending || on.GroupID != "g1" || !on.RegisteredAt.Equal(at) {
		t.Fatalf("a-on: got %+v %v", on, err)
	}
	if _, err := s.Agent("no-tenant"); err == nil {
		t.Fatal("a record without tenant was moved")
	}
	pending := s.PendingRegistrations()
	if len(pending) != 1 || pending[0].GetRegistrationKey() != "k" {
		t.Fatalf("pending registrations: got %v, want a-off's with its key", pending)
	}
	if v, keys := s.RegistrationKeys(); v != 5 || len(keys) != 1 || s.GroupTier("g1") != "server" {
		t.Fatalf("control state: version %d, %d keys, g1 tier %q", v, len(keys), s.GroupTier("g1"))
	}
	if n, err := s.ImportLegacy(context.Background(), legacy); err != nil || n != 0 {
		t.Fatalf("second import: got %d, %v; want nothing moved", n, err)
	}

	// The cloud accepts the offline registration: pending and its key are gone.
	if err := s.ReconcileDone(context.Background(), "a-off", &cloudv1.RegisterAgentResponse{AgentId: "a-off", TenantId: "t1", GroupId: "g3"}); err != nil {
		t.Fatal(err)
	}
	off, err := s.Agent("a-off")
	if err != nil || off.Pending || off.GroupID != "g3" || len(s.PendingRegistrations()) != 0 {
		t.Fatalf("after reconcile: got %+v %v, %d pending", off, err, len(s.PendingRegistrations()))
	}
	a, _ := s.Node().Store().Agent("a-off")
	if a.GetPendingRequest() != nil {
		t.Fatal("the registration key stays in the replicated state after reconcile")
	}
	// Refused: forgotten.
	if err := s.PutAgent(sitestate.AgentRecord{AgentID: "a-bad", TenantID: "t1", Pending: true, RegisteredAt: at},
		&cloudv1.RegisterAgentRequest{AgentId: "a-bad", RegistrationKey: "nope"}); err != nil {
		t.Fatal(err)
	}
	if err := s.ReconcileDone(context.Background(), "a-bad", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Agent("a-bad"); err == nil {
		t.Fatal("an agent the cloud refused is still registered")
	}
}

// The control state of a poll lands in the replicated state as
// differences, and a poll older than what is stored changes nothing.
func TestApplyControl(t *testing.T) {
	s := sitestatetest.New(t, sitestatetest.Tenant("t1"))
	ctx := context.Background()
	poll := &cloudv1.ControlPollResponse{
		Version:       3,
		GroupPolicies: []*cloudv1.GroupPolicy{{GroupId: "g1", Tier: "workstation"}},
		DnsOverrides:  []*cloudv1.DnsOverride{{Name: "a.example.", Type: cloudv1.DnsType_DNS_TYPE_A, Values: []string{"192.0.2.1"}, TtlSeconds: 60}},
		AllowList:     &cloudv1.AllowList{Cidrs: []string{"192.0.2.0/24"}, Names: []string{"ok.example."}},
		Isolation:     []*cloudv1.AgentIsolation{{AgentId: "a1", Isolated: true}},
		Actions:       []*cloudv1.PendingAction{{ActionId: "x1", AgentId: "a1", Action: action.New(agentv1.ActionType_ACTION_TYPE_HEARTBEAT_NOW)}},
	}
	if err := s.ApplyControl(ctx, poll); err != nil {
		t.Fatal(err)
	}
	cmds := s.Commands("a1")
	if len(cmds) != 2 || cmds[0].GetAction().GetType() != agentv1.ActionType_ACTION_TYPE_ISOLATE || cmds[1].GetId() != "x1" {
		t.Fatalf("commands of a1: got %v, want the isolation state then x1", cmds)
	}
	if !sitestate.IsStateCommand(cmds[0].GetId()) || sitestate.IsStateCommand(cmds[1].GetId()) {
		t.Fatalf("state command ids: %q %q", cmds[0].GetId(), cmds[1].GetId())
	}
	if len(s.Commands("a2")) != 0 {
		t.Fatalf("an agent with nothing pending got %v", s.Commands("a2"))
	}
	if got := s.GroupTier("g1"); got != "workstation" {
		t.Fatalf("tier: got %q", got)
	}
	// The action finished elsewhere and the DNS override went away.
	poll2 := &cloudv1.ControlPollResponse{Version: 4, AllowList: poll.AllowList, Isolation: poll.Isolation}
	if err := s.ApplyControl(ctx, poll2); err != nil {
		t.Fatal(err)
	}
	if len(s.Node().Store().DNSOverrides()) != 0 || len(s.Commands("a1")) != 1 || s.GroupTier("g1") != "" {
		t.Fatalf("after poll 4: %d overrides, commands %v, tier %q", len(s.Node().Store().DNSOverrides()), s.Commands("a1"), s.GroupTier("g1"))
	}
	if err := s.ApplyControl(ctx, poll); err != nil { // a stale answer
		t.Fatal(err)
	}
	if s.ControlVersion() != 4 || s.GroupTier("g1") != "" {
		t.Fatalf("a stale poll replaced the keys: version %d, tier %q", s.ControlVersion(), s.GroupTier("g1"))
	}
}

// Isolation reaches the agent as its desired state only: the cloud's
// isolate and cancel_isolation actions are not delivered as commands, and
// the agent's result for the state finishes them (an overridden one as
// superseded).
func TestIsolationActionsFinishedByTheStateResult(t *testing.T) {
	s := sitestatetest.New(t, sitestatetest.Tenant("t1"))
	ctx := context.Background()
	poll := &cloudv1.ControlPollResponse{
		Version:   1,
		AllowList: &cloudv1.AllowList{Cidrs: []string{"10.0.0.0/8"}},
		Isolation: []*cloudv1.AgentIsolation{{AgentId: "a1", Isolated: true}},
		Actions: []*cloudv1.PendingAction{
			{ActionId: "act1", AgentId: "a1", CreatedUnixMs: 1, Action: action.New(agentv1.ActionType_ACTION_TYPE_ISOLATE)},
			{ActionId: "act2", AgentId: "a1", CreatedUnixMs: 2, Action: action.New(agentv1.ActionType_ACTION_TYPE_HEARTBEAT_NOW)},
			{ActionId: "act3", AgentId: "a2", CreatedUnixMs: 3, Action: action.New(agentv1.ActionType_ACTION_TYPE_HEARTBEAT_NOW)},
		},
	}
	if err := s.ApplyControl(ctx, poll); err != nil {
		t.Fatal(err)
	}
	cmds := s.Commands("a1")
	if len(cmds) != 2 || !sitestate.IsStateCommand(cmds[0].GetId()) || cmds[1].GetId() != "act2" {
		t.Fatalf("got %v, want the isolation state then act2", cmds)
	}
	if err := action.Validate(cmds[0].GetAction()); err != nil {
		t.Fatalf("state command: %v", err)
	}
	if got := cmds[0].GetAction().GetIsolate().GetAllowList().GetCidrs(); len(got) != 1 || got[0] != "10.0.0.0/8" {
		t.Errorf("state command allow-list: got %v", got)
	}
	if again := s.Commands("a1")[0].GetId(); again != cmds[0].GetId() {
		t.Errorf("state command id changed for the same state: %s, then %s", cmds[0].GetId(), again)
	}
	res := s.IsolationResults("a1", &agentv1.CommandResult{Id: cmds[0].GetId(), Ok: true})
	if len(res) != 1 || res[0].GetId() != "act1" || !res[0].GetOk() {
		t.Fatalf("results for the state: got %v, want act1 ok", res)
	}
	if res := s.IsolationResults("a1", &agentv1.CommandResult{Id: "state:isolate:0000", Ok: true}); len(res) != 0 {
		t.Fatalf("a result for a state that is not current finished %v", res)
	}

	// An isolate and then a cancel: the state is "not isolated", so the
	// cancel takes the agent's outcome and the isolate is superseded.
	poll.Version = 2
	poll.Isolation = []*cloudv1.AgentIsolation{{AgentId: "a1", Isolated: false}}
	poll.Actions = append(poll.Actions, &cloudv1.PendingAction{ActionId: "act4", AgentId: "a1", CreatedUnixMs: 4, Action: action.New(agentv1.ActionType_ACTION_TYPE_CANCEL_ISOLATION)})
	if err := s.ApplyControl(ctx, poll); err != nil {
		t.Fatal(err)
	}
	state := s.StateCommand("a1")
	if state.GetAction().GetType() != agentv1.ActionType_ACTION_TYPE_CANCEL_ISOLATION {
		t.Fatalf("state after cancel: %v", state)
	}
	byID := map[string]*agentv1.CommandResult{}
	for _, r := range s.IsolationResults("a1", &agentv1.CommandResult{Id: state.GetId(), Ok: true}) {
		byID[r.GetId()] = r
	}
	if len(byID) != 2 || !byID["act4"].GetOk() || byID["act1"].GetOk() || !strings.Contains(byID["act1"].GetReason(), "superseded") {
		t.Fatalf("results after cancel: got %v", byID)
	}
}
