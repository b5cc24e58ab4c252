package sitestate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// stateCommandPrefix marks the commands that carry an agent's desired
// isolation state: they are re-sent on every connect and have no action at
// the cloud to report to.
const stateCommandPrefix = "state:"

// IsStateCommand reports whether a command id names a desired isolation
// state rather than one of the cloud's actions.
func IsStateCommand(id string) bool { return strings.HasPrefix(id, stateCommandPrefix) }

// Commands is everything an agent must still be told: its desired
// isolation state first (isolation is state, not an event), then its
// pending actions oldest first.
func (s *State) Commands(agentID string) []*agentv1.Command {
	st := s.node.Store()
	var out []*agentv1.Command
	if i := st.Isolation(agentID); i.GetUpdatedUnixMs() != 0 || i.GetIsolated() {
		out = append(out, s.isolationCommand(i.GetIsolated()))
	}
	for _, p := range st.PendingCommands(agentID) {
		out = append(out, &agentv1.Command{Id: p.GetCommandId(), Type: p.GetType(), Payload: p.GetPayload(), CreatedUnixMs: p.GetCreatedUnixMs()})
	}
	return out
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
	typ, payload := "cancel_isolation", []byte(`{}`)
	if isolated {
		cidrs, names := s.AllowList()
		typ = "isolate"
		payload, _ = json.Marshal(map[string][]string{"allow_cidrs": nonNil(cidrs), "allow_names": nonNil(names)})
	}
	sum := sha256.Sum256(append([]byte(typ), payload...))
	return &agentv1.Command{Id: stateCommandPrefix + typ + ":" + hex.EncodeToString(sum[:8]), Type: typ, Payload: payload}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
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
