package sitestate

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/internal/action"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// stateCommandPrefix marks the commands that carry an agent's desired
// isolation state: they are re-sent on every connect and have no action at
// the cloud of their own (their result finishes the isolation actions).
const stateCommandPrefix = "state:"

// IsStateCommand reports whether a command id names a desired isolation
// state rather than one of the cloud's actions.
func IsStateCommand(id string) bool { return strings.HasPrefix(id, stateCommandPrefix) }

// Commands is everything an agent must still be told: its desired
// isolation state first (isolation is state, not an event), then its
// pending actions oldest first. The cloud's isolate and cancel_isolation
// actions are not among them: they reach the agent only as that state, and
// the state's result finishes them (IsolationResults).
func (s *State) Commands(agentID string) []*agentv1.Command {
	var out []*agentv1.Command
	if cmd := s.StateCommand(agentID); cmd != nil {
		out = append(out, cmd)
	}
	for _, c := range s.pendingActions(agentID) {
		if !isIsolationAction(c) {
			out = append(out, c)
		}
	}
	return out
}

// StateCommand is the agent's desired isolation state as a command, or nil
// when the site never had one for it.
func (s *State) StateCommand(agentID string) *agentv1.Command {
	i := s.node.Store().Isolation(agentID)
	if i.GetUpdatedUnixMs() == 0 && !i.GetIsolated() {
		return nil
	}
	return s.isolationCommand(i.GetIsolated())
}

// IsolationActions are the agent's unfinished isolate and cancel_isolation
// actions, oldest first.
func (s *State) IsolationActions(agentID string) []*agentv1.Command {
	var out []*agentv1.Command
	for _, c := range s.pendingActions(agentID) {
		if isIsolationAction(c) {
			out = append(out, c)
		}
	}
	return out
}

// IsolationResults turns the agent's result for its isolation state into
// results for the cloud's isolation actions: the state's outcome for the
// actions that asked for it, "superseded" for those a later one overrode
// (an isolate followed by a cancel). A result for a state that is no longer
// current finishes nothing.
func (s *State) IsolationResults(agentID string, r *agentv1.CommandResult) []*agentv1.CommandResult {
	cur := s.StateCommand(agentID)
	if cur == nil || cur.GetId() != r.GetId() {
		return nil
	}
	want := agentv1.ActionType_ACTION_TYPE_CANCEL_ISOLATION
	if s.Isolated(agentID) {
		want = agentv1.ActionType_ACTION_TYPE_ISOLATE
	}
	var out []*agentv1.CommandResult
	for _, a := range s.IsolationActions(agentID) {
		res := &agentv1.CommandResult{Id: a.GetId(), Ok: r.GetOk(), Reason: r.GetReason(), Output: r.GetOutput()}
		if a.GetAction().GetType() != want {
			res = &agentv1.CommandResult{Id: a.GetId(), Reason: "superseded by a later " + action.Name(want)}
		}
		out = append(out, res)
	}
	return out
}

func (s *State) pendingActions(agentID string) []*agentv1.Command {
	var out []*agentv1.Command
	for _, p := range s.node.Store().PendingCommands(agentID) {
		out = append(out, &agentv1.Command{Id: p.GetCommandId(), Action: p.GetAction(), CreatedUnixMs: p.GetCreatedUnixMs()})
	}
	return out
}

func isIsolationAction(c *agentv1.Command) bool {
	t := c.GetAction().GetType()
	return t == agentv1.ActionType_ACTION_TYPE_ISOLATE || t == agentv1.ActionType_ACTION_TYPE_CANCEL_ISOLATION
}

// AgentsWithWork lists agents with pending commands or an isolation state.
func (s *State) AgentsWithWork() []string {
	seen := map[string]bool{}
	var ids []string
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, c := range s.node.Store().AllPendingCommands() {
		add(c.GetAgentId())
	}
	for _, i := range s.node.Store().Isolations() {
		add(i.GetAgentId())
	}
	return ids
}

// Isolated reports whether agentID must be isolated now.
func (s *State) Isolated(agentID string) bool { return s.node.Store().Isolation(agentID).GetIsolated() }

// AllowList is the relay's tenant's allow-list for isolated agents.
func (s *State) AllowList() (cidrs, names []string) {
	al, err := s.node.Store().AllowList(s.id.TenantID())
	if err != nil {
		return nil, nil
	}
	return al.GetCidrs(), al.GetNames()
}

// isolationCommand carries the desired state with the tenant's allow-list;
// its id names the state, so an agent applies each distinct state once.
func (s *State) isolationCommand(isolated bool) *agentv1.Command {
	typ, act := "cancel_isolation", action.New(agentv1.ActionType_ACTION_TYPE_CANCEL_ISOLATION)
	if isolated {
		cidrs, names := s.AllowList()
		typ = "isolate"
		act = &agentv1.Action{Type: agentv1.ActionType_ACTION_TYPE_ISOLATE, Payload: &agentv1.Action_Isolate{Isolate: &agentv1.IsolatePayload{
			AllowList: &agentv1.IsolationAllowList{Cidrs: cidrs, Names: names},
		}}}
	}
	payload, _ := proto.MarshalOptions{Deterministic: true}.Marshal(act)
	sum := sha256.Sum256(append([]byte(typ), payload...))
	return &agentv1.Command{Id: stateCommandPrefix + typ + ":" + hex.EncodeToString(sum[:8]), Action: act}
}

// SitePins lists the site's relays that agents can reach, with their keys.
func (s *State) SitePins() []*agentv1.RelayPin {
	var out []*agentv1.RelayPin
	for _, m := range s.node.Store().Members() {
		if m.GetAgentAddr() != "" && m.GetAgentFingerprint() != "" {
			out = append(out, &agentv1.RelayPin{Addr: m.GetAgentAddr(), Fingerprint: m.GetAgentFingerprint()})
		}
	}
	return out
}
