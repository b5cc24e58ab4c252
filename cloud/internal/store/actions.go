package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/internal/action"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// Keys:
//   ac/<tenant>/<action id>   Action (ids sort by creation time)
//   ap/<tenant>/<action id>   index of unfinished actions
//   iso/<tenant>/<agent id>   Isolation (desired state)

// Action types.
const (
	ActIsolate               = "isolate"
	ActCancelIsolation       = "cancel_isolation"
	ActQuarantineFile        = "quarantine_file"
	ActRestoreFile           = "restore_file"
	ActTerminateProcess      = "terminate_process"
	ActRetrieveFile          = "retrieve_file"
	ActRetrieveSupportBundle = "retrieve_support_bundle"
	ActSetProxy              = "set_proxy"
	ActClearProxy            = "clear_proxy"
	ActHeartbeatNow          = "heartbeat_now"
)

// Limits of actions.
const (
	MaxActionOutput  = 1 << 20
	MaxPayloadBytes  = 4 << 10
	MaxBulkAgents    = 5000
	maxReasonBytes   = 4 << 10
	maxActionIDBytes = 64
)

// ActionTypes lists the action types.
func ActionTypes() []string { return action.Names() }

// CheckAction validates an action type and payload (a JSON object, empty
// meaning {}) and returns the canonical payload. The rules are
// internal/action's, the same the agent applies.
func CheckAction(typ string, payload []byte) (json.RawMessage, error) {
	a, err := ParseAction(typ, payload)
	if err != nil {
		return nil, err
	}
	return action.JSON(a)
}

// ParseAction is the typed action of an API or stored (type, payload).
func ParseAction(typ string, payload []byte) (*agentv1.Action, error) {
	if len(payload) > MaxPayloadBytes {
		return nil, fmt.Errorf("%w: %s payload over %d bytes", ErrInvalid, typ, MaxPayloadBytes)
	}
	a, err := action.ParseJSON(typ, payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, typ, err)
	}
	return a, nil
}

func (s *Store) newActionID() string {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(s.now().UnixNano()))
	rand.Read(b[8:])
	return "act_" + hex.EncodeToString(b[:])
}

// CreateAction queues an action for an agent of tenant. isolate and
// cancel_isolation also set the agent's desired isolation state.
func (s *Store) CreateAction(tenant, agent, typ string, payload []byte) (Action, error) {
	acts, err := s.createActions(tenant, []string{agent}, typ, payload)
	if err != nil {
		return Action{}, err
	}
	return acts[0], nil
}

// CreateBulkActions queues the same action for several agents of tenant:
// agentIDs, or every agent of group when group is set (not both). All or
// none are created.
func (s *Store) CreateBulkActions(tenant string, agentIDs []string, group, typ string, payload []byte) ([]Action, error) {
	if (len(agentIDs) == 0) == (group == "") {
		return nil, fmt.Errorf("%w: bulk action: give agent_ids or group_id", ErrInvalid)
	}
	if group != "" {
		var err error
		if agentIDs, err = s.groupAgents(tenant, group); err != nil {
			return nil, err
		}
		if len(agentIDs) == 0 {
			return []Action{}, nil
		}
	}
	return s.createActions(tenant, agentIDs, typ, payload)
}

func (s *Store) groupAgents(tenant, group string) ([]string, error) {
	var ids []string
	err := s.view(func(txn *badger.Txn) error {
		if ok, err := exists(txn, k("g", tenant, group)); err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("group %q: %w", group, ErrNotFound)
			}
			return err
		}
		all, err := indexIDs(txn, prefix("at", tenant))
		if err != nil {
			return err
		}
		for _, id := range all {
			var a Agent
			if err := getJSON(txn, k("a", id), &a); err != nil {
				return fmt.Errorf("agent %s: %w", id, err)
			}
			if a.GroupID == group {
				ids = append(ids, id)
			}
		}
		return nil
	})
	return ids, err
}

func (s *Store) createActions(tenant string, agents []string, typ string, payload []byte) ([]Action, error) {
	p, err := CheckAction(typ, payload)
	if err != nil {
		return nil, err
	}
	if len(agents) > MaxBulkAgents {
		return nil, fmt.Errorf("%w: %d agents, at most %d per call", ErrInvalid, len(agents), MaxBulkAgents)
	}
	now := s.now().UTC()
	out := make([]Action, 0, len(agents))
	err = s.update(func(txn *badger.Txn) error {
		if err := tenantExists(txn, tenant); err != nil {
			return err
		}
		seen := make(map[string]bool, len(agents))
		for _, agent := range agents {
			if seen[agent] {
				continue
			}
			seen[agent] = true
			var ag Agent
			if err := getJSON(txn, k("a", agent), &ag); err != nil || ag.TenantID != tenant {
				if err == nil || err == ErrNotFound {
					err = fmt.Errorf("agent %q: %w", agent, ErrNotFound)
				}
				return err
			}
			a := Action{ID: s.newActionID(), TenantID: tenant, AgentID: agent, Type: typ, Payload: p,
				State: ActionPending, CreatedAt: now}
			if err := setJSON(txn, k("ac", tenant, a.ID), a); err != nil {
				return err
			}
			if err := txn.Set(k("ap", tenant, a.ID), nil); err != nil {
				return err
			}
			if typ == ActIsolate || typ == ActCancelIsolation {
				iso := Isolation{AgentID: agent, Isolated: typ == ActIsolate, ActionID: a.ID, UpdatedAt: now}
				if err := setJSON(txn, k("iso", tenant, agent), iso); err != nil {
					return err
				}
			}
			out = append(out, a)
		}
		return bumpTenant(txn, tenant)
	})
	if err != nil {
		return nil, fmt.Errorf("create %s action: %w", typ, err)
	}
	s.notify()
	return out, nil
}

func checkActionID(id string) error {
	if id == "" || len(id) > maxActionIDBytes || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("%w: action id %q", ErrInvalid, id)
	}
	return nil
}

// GetAction returns an action of tenant.
func (s *Store) GetAction(tenant, id string) (Action, error) {
	if err := checkActionID(id); err != nil {
		return Action{}, err
	}
	var a Action
	err := s.view(func(txn *badger.Txn) error { return getJSON(txn, k("ac", tenant, id), &a) })
	if err != nil {
		return Action{}, fmt.Errorf("action %s: %w", id, err)
	}
	return a, nil
}

// ListActions returns a tenant's actions, oldest first, filtered by agent
// and state when they are set.
func (s *Store) ListActions(tenant, agent, state string) ([]Action, error) {
	switch state {
	case "", ActionPending, ActionDelivered, ActionDone, ActionFailed:
	default:
		return nil, fmt.Errorf("%w: state %q", ErrInvalid, state)
	}
	out := []Action{}
	err := s.view(func(txn *badger.Txn) error {
		if err := tenantExists(txn, tenant); err != nil {
			return err
		}
		all, err := listJSON[Action](txn, prefix("ac", tenant))
		if err != nil {
			return err
		}
		for _, a := range all {
			if (agent == "" || a.AgentID == agent) && (state == "" || a.State == state) {
				out = append(out, a)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list actions: %w", err)
	}
	return out, nil
}

func pendingActions(txn *badger.Txn, tenant string) ([]Action, error) {
	ids, err := indexIDs(txn, prefix("ap", tenant))
	if err != nil {
		return nil, err
	}
	out := make([]Action, 0, len(ids))
	for _, id := range ids {
		var a Action
		if err := getJSON(txn, k("ac", tenant, id), &a); err != nil {
			return nil, fmt.Errorf("action %s: %w", id, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// MarkDelivered moves the relay's tenant's pending actions among ids to
// delivered_to_relay. It does not change the control version (the relay's
// view is the same).
func (s *Store) MarkDelivered(relay Relay, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	now := s.now().UTC()
	err := s.update(func(txn *badger.Txn) error {
		for _, id := range ids {
			var a Action
			err := getJSON(txn, k("ac", relay.TenantID, id), &a)
			if err == ErrNotFound {
				continue
			}
			if err != nil {
				return err
			}
			if a.State != ActionPending {
				continue
			}
			a.State, a.DeliveredAt, a.RelayID = ActionDelivered, now, relay.ID
			if err := setJSON(txn, k("ac", relay.TenantID, id), a); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark delivered: %w", err)
	}
	return nil
}

// ResultInput is one result a relay reports.
type ResultInput struct {
	ActionID string
	AgentID  string
	OK       bool
	Reason   string
	Output   []byte
}

// RejectedResult is a result that will never be accepted.
type RejectedResult struct {
	ActionID string
	Reason   string
}

// RecordResults finishes the relay's tenant's actions. It is idempotent: the
// first result of an action wins, a later one for a finished action is
// accepted and changes nothing. A result for an unknown action, another
// tenant's, or with the wrong agent is rejected.
func (s *Store) RecordResults(relay Relay, results []ResultInput) (accepted int, rejected []RejectedResult, err error) {
	now := s.now().UTC()
	changed := false
	err = s.update(func(txn *badger.Txn) error {
		accepted, rejected, changed = 0, nil, false
		for _, r := range results {
			if checkActionID(r.ActionID) != nil {
				rejected = append(rejected, RejectedResult{r.ActionID, "malformed action id"})
				continue
			}
			var a Action
			err := getJSON(txn, k("ac", relay.TenantID, r.ActionID), &a)
			if err == ErrNotFound {
				rejected = append(rejected, RejectedResult{r.ActionID, "unknown action"})
				continue
			}
			if err != nil {
				return err
			}
			if a.AgentID != r.AgentID {
				rejected = append(rejected, RejectedResult{r.ActionID, "agent_id does not match the action"})
				continue
			}
			accepted++
			if a.Finished() {
				continue
			}
			res := &ActionResult{OK: r.OK, Reason: truncate(r.Reason, maxReasonBytes), FinishedAt: now, RelayID: relay.ID}
			res.Output = r.Output
			if len(res.Output) > MaxActionOutput {
				res.Output, res.OutputTruncated = res.Output[:MaxActionOutput], true
			}
			a.Result, a.State = res, ActionFailed
			if r.OK {
				a.State = ActionDone
			}
			if a.DeliveredAt.IsZero() {
				a.DeliveredAt, a.RelayID = now, relay.ID
			}
			if err := setJSON(txn, k("ac", relay.TenantID, a.ID), a); err != nil {
				return err
			}
			if err := txn.Delete(k("ap", relay.TenantID, a.ID)); err != nil {
				return err
			}
			changed = true
		}
		if changed {
			return bumpTenant(txn, relay.TenantID)
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("record results: %w", err)
	}
	if changed {
		s.notify()
	}
	return accepted, rejected, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// IsolationStates returns the desired isolation of a tenant's agents that
// have one, by agent id.
func (s *Store) IsolationStates(tenant string) (map[string]Isolation, error) {
	out := map[string]Isolation{}
	err := s.view(func(txn *badger.Txn) error {
		all, err := listJSON[Isolation](txn, prefix("iso", tenant))
		for _, i := range all {
			out[i.AgentID] = i
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("isolation states: %w", err)
	}
	return out, nil
}
