package daemon

import (
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/action"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

// Isolation reaches the agent as its desired state only: the cloud's isolate
// action is not delivered as a command of its own.
func TestAgentCommandsCarryIsolationAsStateOnly(t *testing.T) {
	d := &Daemon{}
	d.lastControl.Store(&cloudv1.ControlPollResponse{
		AllowList: &cloudv1.AllowList{Cidrs: []string{"10.0.0.0/8"}},
		Isolation: []*cloudv1.AgentIsolation{{AgentId: "a1", Isolated: true}},
		Actions: []*cloudv1.PendingAction{
			{ActionId: "act1", AgentId: "a1", Action: action.New(agentv1.ActionType_ACTION_TYPE_ISOLATE)},
			{ActionId: "act2", AgentId: "a1", Action: action.New(agentv1.ActionType_ACTION_TYPE_HEARTBEAT_NOW)},
			{ActionId: "act3", AgentId: "a2", Action: action.New(agentv1.ActionType_ACTION_TYPE_HEARTBEAT_NOW)},
		},
	})
	cmds := d.agentCommands("a1")
	if len(cmds) != 2 || !strings.HasPrefix(cmds[0].GetId(), stateCommandPrefix+"isolate:") || cmds[1].GetId() != "act2" {
		t.Fatalf("got %v, want the isolation state then act2", cmds)
	}
	if err := action.Validate(cmds[0].GetAction()); err != nil {
		t.Fatalf("state command: %v", err)
	}
	if got := cmds[0].GetAction().GetIsolate().GetAllowList().GetCidrs(); len(got) != 1 || got[0] != "10.0.0.0/8" {
		t.Errorf("state command allow-list: got %v", got)
	}
	if again := d.agentCommands("a1")[0].GetId(); again != cmds[0].GetId() {
		t.Errorf("state command id changed for the same state: %s, then %s", cmds[0].GetId(), again)
	}
	if iso := isolationActions(d.source(), "a1"); len(iso) != 1 || iso[0].GetId() != "act1" {
		t.Errorf("isolation actions: got %v, want act1", iso)
	}
}
