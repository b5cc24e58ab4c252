package dispatch_test

import (
	"context"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/internal/action"
	"github.com/gatehouse/gatehouse/internal/testkit"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/dispatch"
	"github.com/gatehouse/gatehouse/relay/internal/sitestate/sitestatetest"
)

// connectedAgents records what the pusher hands to agents it has.
type connectedAgents struct {
	mu     sync.Mutex
	online map[string]bool
	got    map[string][]string // agent id -> command ids, in push order
}

func (c *connectedAgents) PushCommand(agentID string, cmd *agentv1.Command) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.online[agentID] {
		return false
	}
	c.got[agentID] = append(c.got[agentID], cmd.GetId())
	return true
}

func (c *connectedAgents) pushed(agentID string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got[agentID]...)
}

// resultsSink is a cloud that records the results reported to it.
type resultsSink struct {
	mu  sync.Mutex
	got map[string]*cloudv1.ActionResult
}

func (r *resultsSink) Results(_ context.Context, req *cloudv1.ActionResults) (*cloudv1.ActionResultsAck, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range req.GetResults() {
		r.got[x.GetActionId()] = x
	}
	return &cloudv1.ActionResultsAck{Accepted: uint32(len(req.GetResults()))}, nil
}

func (r *resultsSink) result(id string) *cloudv1.ActionResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[id]
}

// A committed command reaches a connected agent once; an agent that is not
// connected gets nothing (it gets its commands at hello); the isolation
// state is pushed again when a new isolation action arrives for the same
// state, and the agent's one result for the state finishes that action at
// the cloud and in the site state.
func TestPusherAndResults(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := sitestatetest.New(t, sitestatetest.Tenant("t1"))
	agents := &connectedAgents{online: map[string]bool{"a1": true}, got: map[string][]string{}}
	cloud := &resultsSink{got: map[string]*cloudv1.ActionResult{}}
	p := dispatch.NewPusher(dispatch.PusherDeps{State: s, Agents: agents})
	res := dispatch.NewResults(dispatch.ResultsDeps{State: s, Client: cloud, Logger: testkit.Logger(t)})
	go p.Run(ctx)
	go res.Run(ctx)

	poll := &cloudv1.ControlPollResponse{
		Version: 1,
		Actions: []*cloudv1.PendingAction{
			{ActionId: "hb1", AgentId: "a1", CreatedUnixMs: 1, Action: action.New(agentv1.ActionType_ACTION_TYPE_HEARTBEAT_NOW)},
			{ActionId: "hb2", AgentId: "a2", CreatedUnixMs: 2, Action: action.New(agentv1.ActionType_ACTION_TYPE_HEARTBEAT_NOW)},
		},
	}
	if err := s.ApplyControl(ctx, poll); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "hb1 pushed to a1", func() bool { return len(agents.pushed("a1")) == 1 })
	if got := agents.pushed("a1"); got[0] != "hb1" {
		t.Fatalf("a1 got %v, want hb1", got)
	}
	p.PushAll()
	if got := agents.pushed("a1"); len(got) != 1 {
		t.Fatalf("a command pushed twice: %v", got)
	}
	if got := agents.pushed("a2"); len(got) != 0 {
		t.Fatalf("an agent not connected was pushed %v", got)
	}

	// The result goes to the cloud, then the command leaves the site state.
	res.Report("a1", &agentv1.CommandResult{Id: "hb1", Ok: true})
	testkit.WaitFor(t, "hb1 reported and completed", func() bool {
		return cloud.result("hb1").GetOk() && len(s.Node().Store().PendingCommands("a1")) == 0
	})

	// Isolate: the state is pushed with the allow-list that came in the
	// same poll (again when the action commits after the state: offering a
	// state twice is harmless, the agent answers its recorded result), and
	// never the action itself.
	poll.Version = 2
	poll.AllowList = &cloudv1.AllowList{Cidrs: []string{"10.0.0.0/8"}}
	poll.Isolation = []*cloudv1.AgentIsolation{{AgentId: "a1", Isolated: true}}
	poll.Actions = []*cloudv1.PendingAction{
		{ActionId: "iso1", AgentId: "a1", CreatedUnixMs: 3, Action: action.New(agentv1.ActionType_ACTION_TYPE_ISOLATE)},
	}
	if err := s.ApplyControl(ctx, poll); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the isolation state pushed", func() bool { return len(agents.pushed("a1")) >= 2 })
	state := agents.pushed("a1")[1]
	if want := s.StateCommand("a1"); want.GetId() != state || len(want.GetAction().GetIsolate().GetAllowList().GetCidrs()) != 1 {
		t.Fatalf("a1 got %q, want its isolation state with the allow-list %v", state, want)
	}
	res.Report("a1", &agentv1.CommandResult{Id: state, Ok: true})
	testkit.WaitFor(t, "iso1 finished by the state's result", func() bool {
		return cloud.result("iso1").GetOk() && len(s.Node().Store().PendingCommands("a1")) == 0
	})

	for _, id := range agents.pushed("a1")[1:] {
		if id != state {
			t.Fatalf("a1 got %v after hb1, want only its isolation state", agents.pushed("a1"))
		}
	}
	// Nothing new once iso1 is done: the state is not offered again.
	before := len(agents.pushed("a1"))
	p.PushAll()
	if got := agents.pushed("a1"); len(got) != before {
		t.Fatalf("pushed again with nothing new: %v", got)
	}

	// A second isolate for the same state offers the state again: the
	// agent answers with its recorded result, which finishes iso2.
	poll.Version = 3
	poll.Actions = []*cloudv1.PendingAction{
		{ActionId: "iso2", AgentId: "a1", CreatedUnixMs: 4, Action: action.New(agentv1.ActionType_ACTION_TYPE_ISOLATE)},
	}
	if err := s.ApplyControl(ctx, poll); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the state offered again", func() bool { return len(agents.pushed("a1")) > before })
	if again := agents.pushed("a1")[before]; again != state {
		t.Fatalf("offered %q, want the unchanged state %q", again, state)
	}
	res.Report("a1", &agentv1.CommandResult{Id: state, Ok: true})
	testkit.WaitFor(t, "iso2 finished", func() bool { return cloud.result("iso2").GetOk() })
}
