package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/cluster"
	"github.com/gatehouse/gatehouse/internal/action"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	clusterv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cluster/v1"
)

// stateCommandPrefix marks the commands that carry an agent's desired
// isolation state: they are re-sent on every connect and have no action at
// the cloud to report to.
const stateCommandPrefix = "state:"

// commandSource is where an agent's pending actions and isolation state
// come from: the cluster's Raft state, or for a relay alone the last poll.
type commandSource interface {
	actions(agentID string) []*agentv1.Command
	isolation(agentID string) (isolated, known bool)
	allowList() (cidrs, names []string)
}

type clusterSource struct {
	node   *cluster.Node
	tenant func() string
}

func (c clusterSource) actions(agentID string) []*agentv1.Command {
	var out []*agentv1.Command
	for _, p := range c.node.Store().PendingCommands(agentID) {
		out = append(out, &agentv1.Command{Id: p.GetCommandId(), Action: p.GetAction(), CreatedUnixMs: p.GetCreatedUnixMs()})
	}
	return out
}

func (c clusterSource) isolation(agentID string) (bool, bool) {
	i := c.node.Store().Isolation(agentID)
	return i.GetIsolated(), i != nil
}

func (c clusterSource) allowList() ([]string, []string) {
	al, err := c.node.Store().AllowList(c.tenant())
	if err != nil {
		return nil, nil
	}
	return al.GetCidrs(), al.GetNames()
}

type pollSource struct{ resp *cloudv1.ControlPollResponse }

func (p pollSource) actions(agentID string) []*agentv1.Command {
	var out []*agentv1.Command
	for _, a := range p.resp.GetActions() {
		if a.GetAgentId() == agentID {
			out = append(out, &agentv1.Command{Id: a.GetActionId(), Action: a.GetAction(), CreatedUnixMs: a.GetCreatedUnixMs()})
		}
	}
	return out
}

func (p pollSource) isolation(agentID string) (bool, bool) {
	for _, i := range p.resp.GetIsolation() {
		if i.GetAgentId() == agentID {
			return i.GetIsolated(), true
		}
	}
	return false, false
}

func (p pollSource) allowList() ([]string, []string) {
	return p.resp.GetAllowList().GetCidrs(), p.resp.GetAllowList().GetNames()
}

func (d *Daemon) source() commandSource {
	if d.node != nil {
		return clusterSource{node: d.node, tenant: func() string {
			if e := d.up.Enrollment(); e != nil {
				return e.GetTenantId()
			}
			return ""
		}}
	}
	if p := d.lastControl.Load(); p != nil {
		return pollSource{p}
	}
	return pollSource{&cloudv1.ControlPollResponse{}}
}

// agentCommands is everything an agent must still be told: its desired
// isolation state first (isolation is state, not an event), then its
// pending actions oldest first. The cloud's isolate and cancel_isolation
// actions are not among them: they reach the agent only as that state, and
// the state's result finishes them (isolationResult).
func (d *Daemon) agentCommands(agentID string) []*agentv1.Command {
	src := d.source()
	var out []*agentv1.Command
	if isolated, known := src.isolation(agentID); known {
		out = append(out, isolationCommand(isolated, src))
	}
	for _, c := range src.actions(agentID) {
		if !isIsolationAction(c) {
			out = append(out, c)
		}
	}
	return out
}

func isIsolationAction(c *agentv1.Command) bool {
	t := c.GetAction().GetType()
	return t == agentv1.ActionType_ACTION_TYPE_ISOLATE || t == agentv1.ActionType_ACTION_TYPE_CANCEL_ISOLATION
}

// isolationActions are the agent's unfinished isolate and cancel_isolation
// actions, oldest first.
func isolationActions(src commandSource, agentID string) []*agentv1.Command {
	var out []*agentv1.Command
	for _, c := range src.actions(agentID) {
		if isIsolationAction(c) {
			out = append(out, c)
		}
	}
	return out
}

// isolationCommand carries the desired state with the tenant's allow-list;
// its id names the state, so an agent applies each distinct state once.
func isolationCommand(isolated bool, src commandSource) *agentv1.Command {
	typ, act := "cancel_isolation", action.New(agentv1.ActionType_ACTION_TYPE_CANCEL_ISOLATION)
	if isolated {
		cidrs, names := src.allowList()
		typ = "isolate"
		act = &agentv1.Action{Type: agentv1.ActionType_ACTION_TYPE_ISOLATE, Payload: &agentv1.Action_Isolate{Isolate: &agentv1.IsolatePayload{
			AllowList: &agentv1.IsolationAllowList{Cidrs: cidrs, Names: names},
		}}}
	}
	payload, _ := proto.MarshalOptions{Deterministic: true}.Marshal(act)
	sum := sha256.Sum256(append([]byte(typ), payload...))
	return &agentv1.Command{Id: stateCommandPrefix + typ + ":" + hex.EncodeToString(sum[:8]), Action: act}
}

// commandPusher pushes new commands to agents connected to this relay as
// soon as they appear, once each (heartbeats and reconnects repeat them).
type commandPusher struct {
	mu     sync.Mutex
	pushed map[string]time.Time // agent id + command id
}

// pushAll offers every agent with something pending its commands.
func (d *Daemon) pushAll(agentIDs []string) {
	d.pusher.mu.Lock()
	defer d.pusher.mu.Unlock()
	if d.pusher.pushed == nil {
		d.pusher.pushed = map[string]time.Time{}
	}
	now := time.Now()
	for k, t := range d.pusher.pushed {
		if now.Sub(t) > time.Hour {
			delete(d.pusher.pushed, k)
		}
	}
	for _, id := range agentIDs {
		for _, cmd := range d.agentCommands(id) {
			k := id + "/" + cmd.GetId()
			if strings.HasPrefix(cmd.GetId(), stateCommandPrefix) {
				// A new isolation action for an unchanged state (or one that
				// arrived after the state was answered) offers the state
				// again: the agent answers its recorded result at once, and
				// that finishes the action.
				for _, a := range isolationActions(d.source(), id) {
					k += "+" + a.GetId()
				}
			}
			if _, done := d.pusher.pushed[k]; done {
				continue
			}
			if d.in.PushCommand(id, cmd) {
				d.pusher.pushed[k] = now
			}
		}
	}
}

// runCommandPush pushes commands and isolation changes applied in the
// cluster to the agents connected here.
func (d *Daemon) runCommandPush(ctx context.Context) error {
	w := d.node.Watch(cluster.KindCommands | cluster.KindIsolation | cluster.KindAllowLists)
	defer w.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.C():
			d.pushAll(d.agentsWithWork())
		}
	}
}

// agentsWithWork lists agents with pending commands or an isolation state.
func (d *Daemon) agentsWithWork() []string {
	seen := map[string]bool{}
	var ids []string
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if d.node != nil {
		for _, c := range d.node.Store().AllPendingCommands() {
			add(c.GetAgentId())
		}
		for _, i := range d.node.Store().Isolations() {
			add(i.GetAgentId())
		}
		return ids
	}
	if p := d.lastControl.Load(); p != nil {
		for _, a := range p.GetActions() {
			add(a.GetAgentId())
		}
		for _, i := range p.GetIsolation() {
			add(i.GetAgentId())
		}
	}
	return ids
}

// commandResult reports an agent's action result to the cloud, then marks
// the command done in the cluster. A result lost on the way (relay crash,
// cloud away) is not lost for good: the cloud lists the action again, the
// agent answers a repeated command id with its recorded result.
func (d *Daemon) commandResult(agentID string, r *agentv1.CommandResult) {
	if strings.HasPrefix(r.GetId(), stateCommandPrefix) {
		if !r.GetOk() {
			d.log.Warn("agent could not apply its isolation state", "agent_id", agentID, "reason", r.GetReason())
		}
		d.isolationResult(agentID, r)
		return
	}
	d.reportResult(agentID, r)
}

// isolationResult finishes the agent's isolation actions with the result of
// its current isolation state: the one outcome the agent reports. Actions
// the current state superseded (an isolate followed by a cancel) fail as
// such. A result for a state that is no longer current finishes nothing.
func (d *Daemon) isolationResult(agentID string, r *agentv1.CommandResult) {
	src := d.source()
	isolated, known := src.isolation(agentID)
	if !known || isolationCommand(isolated, src).GetId() != r.GetId() {
		return
	}
	want := agentv1.ActionType_ACTION_TYPE_CANCEL_ISOLATION
	if isolated {
		want = agentv1.ActionType_ACTION_TYPE_ISOLATE
	}
	for _, a := range isolationActions(src, agentID) {
		res := &agentv1.CommandResult{Id: a.GetId(), Ok: r.GetOk(), Reason: r.GetReason(), Output: r.GetOutput()}
		if a.GetAction().GetType() != want {
			res = &agentv1.CommandResult{Id: a.GetId(), Reason: "superseded by a later " + action.Name(want)}
		}
		d.reportResult(agentID, res)
	}
}

// reportResult reports an action's result to the cloud, then marks the
// command done in the cluster.
func (d *Daemon) reportResult(agentID string, r *agentv1.CommandResult) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		ctx, cancel := context.WithTimeout(d.ctx, 2*time.Minute)
		defer cancel()
		req := &cloudv1.ActionResults{Results: []*cloudv1.ActionResult{{
			ActionId: r.GetId(), AgentId: agentID, Ok: r.GetOk(), Reason: r.GetReason(), Output: r.GetOutput(),
		}}}
		for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
			_, err := d.client.Results(ctx, req)
			if err == nil {
				break
			}
			d.log.Warn("action result not reported yet", "agent_id", agentID, "action_id", r.GetId(), "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		if d.node != nil {
			if _, err := d.node.CompleteCommand(ctx, agentID, r.GetId()); err != nil {
				d.log.Warn("complete command in cluster", "action_id", r.GetId(), "err", err)
			}
		}
	}()
}

// syncActions makes the cluster's pending commands the cloud's pending
// actions: new ones enqueued, finished ones (a result recorded elsewhere)
// removed.
func (d *Daemon) syncActions(ctx context.Context, resp *cloudv1.ControlPollResponse) []error {
	var errs []error
	want := map[string]*cloudv1.PendingAction{}
	for _, a := range resp.GetActions() {
		want[a.GetActionId()] = a
	}
	for _, c := range d.node.Store().AllPendingCommands() {
		if _, ok := want[c.GetCommandId()]; ok {
			delete(want, c.GetCommandId())
			continue
		}
		if _, err := d.node.CompleteCommand(ctx, c.GetAgentId(), c.GetCommandId()); err != nil {
			errs = append(errs, err)
		}
	}
	for _, a := range want {
		if _, err := d.node.EnqueueCommand(ctx, &clusterv1.PendingCommand{
			CommandId: a.GetActionId(), AgentId: a.GetAgentId(), Action: a.GetAction(), CreatedUnixMs: a.GetCreatedUnixMs(),
		}); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}
