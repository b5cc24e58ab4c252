// Package dispatch carries the site's replicated control state to the
// agents and the DNS server of this relay: commands and isolation states
// pushed to connected agents as soon as they are committed (Pusher), agents'
// action results reported to the cloud (Results), and the DNS overrides,
// healthy relays and isolation restrictions served (DNS).
package dispatch

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/gatehouse/gatehouse/cluster"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/sitestate"
)

// Agents is what dispatch needs of ingress (*ingress.Server).
type Agents interface {
	PushCommand(agentID string, cmd *agentv1.Command) bool
}

// Pusher pushes new commands to agents connected to this relay as soon as
// they appear, once each (heartbeats and reconnects repeat them anyway).
type Pusher struct {
	state  *sitestate.State
	agents Agents
	clock  clockwork.Clock

	mu     sync.Mutex
	pushed map[string]time.Time // agent id + "/" + command id (or isolation action id offered with the state)
}

// PusherDeps is what a Pusher works with.
type PusherDeps struct {
	State  *sitestate.State
	Agents Agents
	Clock  clockwork.Clock // nil: the real clock
}

// NewPusher starts nothing.
func NewPusher(d PusherDeps) *Pusher {
	if d.Clock == nil {
		d.Clock = clockwork.NewRealClock()
	}
	return &Pusher{state: d.State, agents: d.Agents, clock: d.Clock, pushed: map[string]time.Time{}}
}

// Run pushes what each committed change of commands, isolation or
// allow-lists leaves pending, until ctx ends.
func (p *Pusher) Run(ctx context.Context) error {
	w := p.state.Node().Watch(cluster.KindCommands | cluster.KindIsolation | cluster.KindAllowLists)
	defer w.Close()
	p.PushAll()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.C():
			p.PushAll()
		}
	}
}

// PushAll offers every agent with something pending its commands.
func (p *Pusher) PushAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	for k, t := range p.pushed {
		if now.Sub(t) > time.Hour {
			delete(p.pushed, k)
		}
	}
	for _, id := range p.state.AgentsWithWork() {
		for _, cmd := range p.state.Commands(id) {
			keys := []string{id + "/" + cmd.GetId()}
			if sitestate.IsStateCommand(cmd.GetId()) {
				// A new isolation action for an unchanged state (or one that
				// arrived after the state was answered) offers the state
				// again: the agent answers its recorded result at once, and
				// that finishes the action.
				for _, a := range p.state.IsolationActions(id) {
					keys = append(keys, id+"/"+a.GetId())
				}
			}
			if p.allPushed(keys) {
				continue
			}
			if p.agents.PushCommand(id, cmd) {
				for _, k := range keys {
					p.pushed[k] = now
				}
			}
		}
	}
}

func (p *Pusher) allPushed(keys []string) bool {
	for _, k := range keys {
		if _, done := p.pushed[k]; !done {
			return false
		}
	}
	return true
}

// ResultsClient is what Results needs of the cloud (*cloudclient.Client).
type ResultsClient interface {
	Results(ctx context.Context, req *cloudv1.ActionResults) (*cloudv1.ActionResultsAck, error)
}

// Results reports agents' action results to the cloud, then marks the
// commands done in the site state. A result lost on the way (relay crash,
// cloud away) is not lost for good: the cloud lists the action again, and
// the agent answers a repeated command id with its recorded result.
type Results struct {
	state  *sitestate.State
	client ResultsClient
	log    *slog.Logger
	clock  clockwork.Clock

	mu     sync.Mutex
	ctx    context.Context // Run's; nil before Run and after it ends
	wg     sync.WaitGroup
	closed bool
}

// ResultsDeps is what Results works with.
type ResultsDeps struct {
	State  *sitestate.State
	Client ResultsClient
	Logger *slog.Logger
	Clock  clockwork.Clock // nil: the real clock
}

// NewResults starts nothing.
func NewResults(d ResultsDeps) *Results {
	if d.Clock == nil {
		d.Clock = clockwork.NewRealClock()
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	return &Results{state: d.State, client: d.Client, log: d.Logger, clock: d.Clock}
}

// Run lets Report start work until ctx ends, then waits for that work.
func (r *Results) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.ctx = ctx
	r.mu.Unlock()
	<-ctx.Done()
	r.mu.Lock()
	r.ctx, r.closed = nil, true
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// Report takes one agent's result of a command; it never blocks. A result
// for its isolation state finishes the cloud's isolation actions that state
// answers. A result that arrives before Run or after it ended is dropped:
// the cloud lists the action again and the agent answers with its recorded
// result.
func (r *Results) Report(agentID string, res *agentv1.CommandResult) {
	if sitestate.IsStateCommand(res.GetId()) {
		if !res.GetOk() {
			r.log.Warn("agent could not apply its isolation state", "agent_id", agentID, "reason", res.GetReason())
		}
		for _, a := range r.state.IsolationResults(agentID, res) {
			r.start(agentID, a)
		}
		return
	}
	r.start(agentID, res)
}

func (r *Results) start(agentID string, res *agentv1.CommandResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx == nil {
		return
	}
	ctx := r.ctx
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.report(ctx, agentID, res)
	}()
}

func (r *Results) report(ctx context.Context, agentID string, res *agentv1.CommandResult) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req := &cloudv1.ActionResults{Results: []*cloudv1.ActionResult{{
		ActionId: res.GetId(), AgentId: agentID, Ok: res.GetOk(), Reason: res.GetReason(), Output: res.GetOutput(),
	}}}
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		_, err := r.client.Results(ctx, req)
		if err == nil {
			break
		}
		r.log.Warn("action result not reported yet", "agent_id", agentID, "action_id", res.GetId(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-r.clock.After(wait):
		}
	}
	if _, err := r.state.Node().CompleteCommand(ctx, agentID, res.GetId()); err != nil {
		r.log.Warn("complete command in the site state", "action_id", res.GetId(), "err", err)
	}
}
