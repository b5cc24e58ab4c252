package state

import (
	"sort"
	"sync"

	"google.golang.org/protobuf/proto"

	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	clusterv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cluster/v1"
)

// dnsKey identifies a DNS override.
type dnsKey struct {
	name string
	typ  cloudv1.DnsType
}

// state is the replicated control state. Stored messages are never mutated
// after they are stored: an apply stores new messages, so a snapshot may share
// them with a shallow copy of the maps.
type state struct {
	agents    map[string]*clusterv1.Agent
	keys      *clusterv1.RegistrationKeys
	isolation map[string]*clusterv1.IsolationIntent
	dns       map[dnsKey]*clusterv1.DnsOverride
	allow     map[string]*clusterv1.AllowList
	commands  map[string]map[string]*clusterv1.PendingCommand // agent id -> command id
	members   map[string]*clusterv1.Member
}

func newState() *state {
	return &state{
		agents:    map[string]*clusterv1.Agent{},
		keys:      &clusterv1.RegistrationKeys{},
		isolation: map[string]*clusterv1.IsolationIntent{},
		dns:       map[dnsKey]*clusterv1.DnsOverride{},
		allow:     map[string]*clusterv1.AllowList{},
		commands:  map[string]map[string]*clusterv1.PendingCommand{},
		members:   map[string]*clusterv1.Member{},
	}
}

// copy is a shallow copy for snapshots (messages are immutable once stored).
func (s *state) copy() *state {
	c := newState()
	for k, v := range s.agents {
		c.agents[k] = v
	}
	c.keys = s.keys
	for k, v := range s.isolation {
		c.isolation[k] = v
	}
	for k, v := range s.dns {
		c.dns[k] = v
	}
	for k, v := range s.allow {
		c.allow[k] = v
	}
	for a, m := range s.commands {
		cm := make(map[string]*clusterv1.PendingCommand, len(m))
		for k, v := range m {
			cm[k] = v
		}
		c.commands[a] = cm
	}
	for k, v := range s.members {
		c.members[k] = v
	}
	return c
}

// Store is the read side of the replicated state, local to this node.
// Every accessor returns copies the caller may keep and modify.
type Store struct {
	mu sync.RWMutex
	st *state
}

// NewStore returns an empty state.
func NewStore() *Store { return &Store{st: newState()} }

func clone[T proto.Message](m T) T { return proto.Clone(m).(T) }

// Agent returns a registered agent or ErrNotFound.
func (s *Store) Agent(id string) (*clusterv1.Agent, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.st.agents[id]
	if !ok {
		return nil, ErrNotFound
	}
	return clone(a), nil
}

// Agents lists registered agents sorted by id.
func (s *Store) Agents() []*clusterv1.Agent {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*clusterv1.Agent, 0, len(s.st.agents))
	for _, a := range s.st.agents {
		out = append(out, clone(a))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AgentId < out[j].AgentId })
	return out
}

// PendingReconcile lists agents registered offline and not yet told to the cloud.
func (s *Store) PendingReconcile() []*clusterv1.Agent {
	var out []*clusterv1.Agent
	for _, a := range s.Agents() {
		if a.PendingReconcile {
			out = append(out, a)
		}
	}
	return out
}

// RegistrationKeys returns the key hashes and their version.
func (s *Store) RegistrationKeys() *clusterv1.RegistrationKeys {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return clone(s.st.keys)
}

// GroupTier is the policy tier of groupID from the last control poll, ""
// when unknown. Heartbeats ask it, so it copies nothing.
func (s *Store) GroupTier(groupID string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, p := range s.st.keys.GetGroupPolicies() {
		if p.GetGroupId() == groupID {
			return p.GetTier()
		}
	}
	return ""
}

// Isolation returns an agent's isolation intent (not isolated when unknown).
func (s *Store) Isolation(agentID string) *clusterv1.IsolationIntent {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if i, ok := s.st.isolation[agentID]; ok {
		return clone(i)
	}
	return &clusterv1.IsolationIntent{AgentId: agentID}
}

// Isolations lists every agent's isolation intent sorted by agent id.
func (s *Store) Isolations() []*clusterv1.IsolationIntent {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*clusterv1.IsolationIntent, 0, len(s.st.isolation))
	for _, i := range s.st.isolation {
		out = append(out, clone(i))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AgentId < out[j].AgentId })
	return out
}

// DNSOverrides lists the DNS overrides sorted by name and type.
func (s *Store) DNSOverrides() []*clusterv1.DnsOverride {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*clusterv1.DnsOverride, 0, len(s.st.dns))
	for _, d := range s.st.dns {
		out = append(out, clone(d))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Type < out[j].Type
	})
	return out
}

// AllowList returns a tenant's allow-list or ErrNotFound.
func (s *Store) AllowList(tenantID string) (*clusterv1.AllowList, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.st.allow[tenantID]
	if !ok {
		return nil, ErrNotFound
	}
	return clone(a), nil
}

// AllowLists lists every tenant's allow-list sorted by tenant.
func (s *Store) AllowLists() []*clusterv1.AllowList {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*clusterv1.AllowList, 0, len(s.st.allow))
	for _, a := range s.st.allow {
		out = append(out, clone(a))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TenantId < out[j].TenantId })
	return out
}

// PendingCommands lists an agent's pending commands, oldest first.
func (s *Store) PendingCommands(agentID string) []*clusterv1.PendingCommand {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := s.st.commands[agentID]
	out := make([]*clusterv1.PendingCommand, 0, len(m))
	for _, c := range m {
		out = append(out, clone(c))
	}
	sortCommands(out)
	return out
}

// AllPendingCommands lists every pending command, oldest first.
func (s *Store) AllPendingCommands() []*clusterv1.PendingCommand {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*clusterv1.PendingCommand
	for _, m := range s.st.commands {
		for _, c := range m {
			out = append(out, clone(c))
		}
	}
	sortCommands(out)
	return out
}

func sortCommands(out []*clusterv1.PendingCommand) {
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreatedUnixMs != out[j].CreatedUnixMs {
			return out[i].CreatedUnixMs < out[j].CreatedUnixMs
		}
		if out[i].AgentId != out[j].AgentId {
			return out[i].AgentId < out[j].AgentId
		}
		return out[i].CommandId < out[j].CommandId
	})
}

// Members lists the site's relays (membership info) sorted by node id.
func (s *Store) Members() []*clusterv1.Member {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*clusterv1.Member, 0, len(s.st.members))
	for _, m := range s.st.members {
		out = append(out, clone(m))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeId < out[j].NodeId })
	return out
}
