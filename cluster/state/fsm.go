package state

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	clusterv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cluster/v1"
)

// Command is one typed write.
type Command struct {
	Type CommandType
	Body proto.Message
}

// Encode returns the log entry bytes: type byte + protobuf body. A type
// this build does not know is refused unless it carries IgnoreIfUnknown.
func (c Command) Encode() ([]byte, error) {
	if !c.Type.Known() && !c.Type.Ignorable() {
		return nil, fmt.Errorf("encode %s: %w", c.Type, ErrUnknownCommand)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.Body)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.Type, err)
	}
	return append([]byte{byte(c.Type)}, b...), nil
}

// FSM is the Raft state machine: it applies committed log entries to the
// Store and tells watchers.
type FSM = fsm

type fsm struct {
	store    *Store
	watch    *watchers
	log      *slog.Logger
	restores atomic.Uint64
	ignored  atomic.Uint64 // entries of unknown types flagged IgnoreIfUnknown

	// fatal is set by the first entry this build cannot apply safely (an
	// unknown type without IgnoreIfUnknown); from then on the FSM applies
	// nothing and takes no snapshot, and stopped is closed so the node stops.
	fatal    atomic.Pointer[error]
	stopped  chan struct{}
	stopOnce sync.Once
}

// NewFSM returns the state machine of store.
func NewFSM(store *Store, watch *Watchers, log *slog.Logger) *FSM {
	return &fsm{store: store, watch: watch, log: log, stopped: make(chan struct{})}
}

// Fatal is the error that stopped the FSM, or nil.
func (f *fsm) Fatal() error {
	if p := f.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// Stopped is closed when the FSM met an entry it cannot apply (Fatal).
func (f *fsm) Stopped() <-chan struct{} { return f.stopped }

// Ignored counts skipped entries of unknown types flagged IgnoreIfUnknown.
func (f *fsm) Ignored() uint64 { return f.ignored.Load() }

// Restores counts snapshots restored (a node catching up from a snapshot).
func (f *fsm) Restores() uint64 { return f.restores.Load() }

func (f *fsm) stop(err error) {
	f.stopOnce.Do(func() {
		f.fatal.Store(&err)
		close(f.stopped)
	})
}

var _ raft.FSM = (*fsm)(nil)

// Apply decodes and applies one entry; the response is nil or an error.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if err := f.Fatal(); err != nil {
		return err // applying past an entry it could not apply would diverge
	}
	if len(l.Data) == 0 {
		return fmt.Errorf("apply index %d: empty entry", l.Index)
	}
	t, body := CommandType(l.Data[0]), l.Data[1:]
	if !t.Known() {
		if t.Ignorable() {
			f.ignored.Add(1)
			f.log.Warn("raft entry of a command type unknown to this version skipped (it is flagged ignore-if-unknown)", "index", l.Index, "type", t.Number())
			return nil
		}
		err := fmt.Errorf("%w: raft log index %d holds command type %d, unknown to this version; refusing to apply it and everything after it so that the nodes cannot diverge: upgrade this relay", ErrUnknownCommand, l.Index, t.Number())
		f.log.Error("cluster node stopping", "err", err)
		f.stop(err)
		return err
	}
	var kinds Kinds
	var err error
	f.store.mu.Lock()
	switch t &^ IgnoreIfUnknown {
	case CmdRegisterAgent:
		kinds, err = f.applyRegisterAgent(body)
	case CmdReconcileAgent:
		kinds, err = f.applyReconcileAgent(body)
	case CmdDeregisterAgent:
		kinds, err = f.applyDeregisterAgent(body)
	case CmdSetRegistrationKeys:
		kinds, err = f.applySetRegistrationKeys(body)
	case CmdSetIsolation:
		kinds, err = f.applySetIsolation(body)
	case CmdSetDNSOverride:
		kinds, err = f.applySetDNSOverride(body)
	case CmdDeleteDNSOverride:
		kinds, err = f.applyDeleteDNSOverride(body)
	case CmdSetAllowList:
		kinds, err = f.applySetAllowList(body)
	case CmdDeleteAllowList:
		kinds, err = f.applyDeleteAllowList(body)
	case CmdEnqueueCommand:
		kinds, err = f.applyEnqueueCommand(body)
	case CmdCompleteCommand:
		kinds, err = f.applyCompleteCommand(body)
	case CmdUpsertMember:
		kinds, err = f.applyUpsertMember(body)
	case CmdRemoveMember:
		kinds, err = f.applyRemoveMember(body)
	default:
		err = ErrUnknownCommand
	}
	f.store.mu.Unlock()
	if err != nil {
		// Deterministic on every node: the entry is skipped everywhere.
		err = fmt.Errorf("apply %s at index %d: %w", t, l.Index, err)
		f.log.Warn("raft entry not applied", "err", err)
		return err
	}
	f.watch.notify(kinds)
	return nil
}

func decode[T proto.Message](b []byte, m T) (T, error) {
	if err := proto.Unmarshal(b, m); err != nil {
		return m, fmt.Errorf("decode %T: %w", m, err)
	}
	return m, nil
}

func (f *fsm) applyRegisterAgent(b []byte) (Kinds, error) {
	a, err := decode(b, &clusterv1.Agent{})
	if err != nil {
		return 0, err
	}
	if err := ValidateAgent(a); err != nil {
		return 0, err
	}
	f.store.st.agents[a.AgentId] = a
	return KindAgents, nil
}

func (f *fsm) applyReconcileAgent(b []byte) (Kinds, error) {
	r, err := decode(b, &clusterv1.AgentRef{})
	if err != nil {
		return 0, err
	}
	a, ok := f.store.st.agents[r.AgentId]
	if !ok {
		return 0, fmt.Errorf("agent %s: %w", r.AgentId, ErrNotFound)
	}
	c := clone(a)
	c.PendingReconcile, c.PendingRequest = false, nil
	f.store.st.agents[r.AgentId] = c
	return KindAgents, nil
}

func (f *fsm) applyDeregisterAgent(b []byte) (Kinds, error) {
	r, err := decode(b, &clusterv1.AgentRef{})
	if err != nil {
		return 0, err
	}
	st := f.store.st
	delete(st.agents, r.AgentId)
	kinds := KindAgents
	if _, ok := st.isolation[r.AgentId]; ok {
		delete(st.isolation, r.AgentId)
		kinds |= KindIsolation
	}
	if _, ok := st.commands[r.AgentId]; ok {
		delete(st.commands, r.AgentId)
		kinds |= KindCommands
	}
	return kinds, nil
}

func (f *fsm) applySetRegistrationKeys(b []byte) (Kinds, error) {
	k, err := decode(b, &clusterv1.RegistrationKeys{})
	if err != nil {
		return 0, err
	}
	if k.Version < f.store.st.keys.Version {
		return 0, nil // stale poll answer: keep the newer set
	}
	f.store.st.keys = k
	return KindRegistrationKeys, nil
}

func (f *fsm) applySetIsolation(b []byte) (Kinds, error) {
	i, err := decode(b, &clusterv1.IsolationIntent{})
	if err != nil {
		return 0, err
	}
	if i.AgentId == "" {
		return 0, fmt.Errorf("isolation: agent_id is required")
	}
	f.store.st.isolation[i.AgentId] = i
	return KindIsolation, nil
}

func (f *fsm) applySetDNSOverride(b []byte) (Kinds, error) {
	d, err := decode(b, &clusterv1.DnsOverride{})
	if err != nil {
		return 0, err
	}
	if err := ValidateDNS(d); err != nil {
		return 0, err
	}
	f.store.st.dns[dnsKey{d.Name, d.Type}] = d
	return KindDNS, nil
}

func (f *fsm) applyDeleteDNSOverride(b []byte) (Kinds, error) {
	r, err := decode(b, &clusterv1.DnsOverrideRef{})
	if err != nil {
		return 0, err
	}
	delete(f.store.st.dns, dnsKey{r.Name, r.Type})
	return KindDNS, nil
}

func (f *fsm) applySetAllowList(b []byte) (Kinds, error) {
	a, err := decode(b, &clusterv1.AllowList{})
	if err != nil {
		return 0, err
	}
	if err := ValidateAllowList(a); err != nil {
		return 0, err
	}
	f.store.st.allow[a.TenantId] = a
	return KindAllowLists, nil
}

func (f *fsm) applyDeleteAllowList(b []byte) (Kinds, error) {
	a, err := decode(b, &clusterv1.AllowList{})
	if err != nil {
		return 0, err
	}
	delete(f.store.st.allow, a.TenantId)
	return KindAllowLists, nil
}

func (f *fsm) applyEnqueueCommand(b []byte) (Kinds, error) {
	c, err := decode(b, &clusterv1.PendingCommand{})
	if err != nil {
		return 0, err
	}
	if c.AgentId == "" || c.CommandId == "" || c.GetAction().GetType() == agentv1.ActionType_ACTION_TYPE_UNSPECIFIED {
		return 0, fmt.Errorf("command: agent_id, command_id and action are required")
	}
	m := f.store.st.commands[c.AgentId]
	if m == nil {
		m = map[string]*clusterv1.PendingCommand{}
		f.store.st.commands[c.AgentId] = m
	}
	m[c.CommandId] = c
	return KindCommands, nil
}

func (f *fsm) applyCompleteCommand(b []byte) (Kinds, error) {
	r, err := decode(b, &clusterv1.CommandRef{})
	if err != nil {
		return 0, err
	}
	m := f.store.st.commands[r.AgentId]
	delete(m, r.CommandId)
	if len(m) == 0 {
		delete(f.store.st.commands, r.AgentId)
	}
	return KindCommands, nil
}

func (f *fsm) applyUpsertMember(b []byte) (Kinds, error) {
	m, err := decode(b, &clusterv1.Member{})
	if err != nil {
		return 0, err
	}
	if m.NodeId == "" {
		return 0, fmt.Errorf("member: node_id is required")
	}
	f.store.st.members[m.NodeId] = m
	return KindMembers, nil
}

func (f *fsm) applyRemoveMember(b []byte) (Kinds, error) {
	r, err := decode(b, &clusterv1.MemberRef{})
	if err != nil {
		return 0, err
	}
	delete(f.store.st.members, r.NodeId)
	return KindMembers, nil
}

// Snapshot captures the state; Persist runs concurrently with Apply.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.Fatal(); err != nil {
		return nil, fmt.Errorf("no snapshot of a state that stopped short: %w", err)
	}
	f.store.mu.RLock()
	defer f.store.mu.RUnlock()
	return &fsmSnapshot{st: f.store.st.copy()}, nil
}

// Restore replaces the whole state with a snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.store.mu.Lock()
	f.store.st = st
	f.store.mu.Unlock()
	f.restores.Add(1)
	f.watch.notify(KindAll)
	return nil
}
