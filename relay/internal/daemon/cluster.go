package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/cluster"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/spool"
)

// clusterStore is the ingress store of a clustered relay: the data path
// (batches, receipts) stays in this node's spool, while the agent registry
// lives in the cluster's Raft state so that every relay of the site admits
// an agent registered through any of them.
type clusterStore struct {
	*spool.Spool
	node    *cluster.Node
	timeout time.Duration
}

// Agent reads the replicated registry (locally, possibly a little stale,
// which only delays an agent registered a moment ago on another node), then
// this node's own registry from before it joined a cluster.
func (s clusterStore) Agent(agentID string) (spool.AgentRecord, error) {
	a, err := s.node.Store().Agent(agentID)
	switch {
	case err == nil:
		return spool.AgentRecord{
			AgentID: a.GetAgentId(), TenantID: a.GetTenantId(), GroupID: a.GetGroupId(),
			RegisteredAt: time.UnixMilli(a.GetRegisteredUnixMs()), Pending: a.GetPendingReconcile(),
		}, nil
	case errors.Is(err, cluster.ErrNotFound):
		return s.Spool.Agent(agentID)
	default:
		return spool.AgentRecord{}, err
	}
}

// PutAgent is a control write: it goes through Raft first, so a node cut off
// in a minority refuses new registrations (known agents keep streaming).
// The local copy keeps the offline registration for this node's uplink to
// reconcile with the cloud.
func (s clusterStore) PutAgent(rec spool.AgentRecord, pending *cloudv1.RegisterAgentRequest) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	a := cluster.NewAgent(rec.AgentID, nil, rec.TenantID, rec.GroupID, "", "", rec.Pending)
	a.RegisteredUnixMs = rec.RegisteredAt.UnixMilli()
	if pending != nil {
		a.PublicKey, a.Hostname = pending.GetPublicKey(), pending.GetHostname()
	}
	if _, err := s.node.RegisterAgent(ctx, a); err != nil {
		return fmt.Errorf("register agent %s in the cluster: %w", rec.AgentID, err)
	}
	return s.Spool.PutAgent(rec, pending)
}

// sitePins lists the cluster's members that agents can reach, with their keys.
func sitePins(node *cluster.Node) func() []*agentv1.RelayPin {
	return func() []*agentv1.RelayPin {
		var out []*agentv1.RelayPin
		for _, m := range node.Store().Members() {
			if m.GetAgentAddr() != "" && m.GetAgentFingerprint() != "" {
				out = append(out, &agentv1.RelayPin{Addr: m.GetAgentAddr(), Fingerprint: m.GetAgentFingerprint()})
			}
		}
		return out
	}
}

// clusterRoutes adds the admin endpoints `gatehouse-relay cluster status,
// leave, remove` talk to.
func (d *Daemon) clusterRoutes() {
	d.admin.Mux.HandleFunc("GET /v1/cluster/status", func(w http.ResponseWriter, _ *http.Request) {
		if d.node == nil {
			writeJSONError(w, http.StatusNotFound, errors.New("this relay is not in a cluster: run `gatehouse-relay cluster init` or `join`"))
			return
		}
		st, err := d.node.Status()
		if err != nil {
			writeJSONError(w, http.StatusServiceUnavailable, err)
			return
		}
		writeJSON(w, st)
	})
	d.admin.Mux.HandleFunc("POST /v1/cluster/leave", func(w http.ResponseWriter, r *http.Request) {
		d.clusterCall(w, func(ctx context.Context) error { return d.node.Leave(ctx) })
	})
	d.admin.Mux.HandleFunc("POST /v1/cluster/remove/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		d.clusterCall(w, func(ctx context.Context) error { return d.node.Remove(ctx, id) })
	})
}

func (d *Daemon) clusterCall(w http.ResponseWriter, f func(context.Context) error) {
	if d.node == nil {
		writeJSONError(w, http.StatusNotFound, errors.New("this relay is not in a cluster"))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f(ctx); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, cluster.ErrNoQuorum) {
			code = http.StatusServiceUnavailable
		}
		writeJSONError(w, code, err)
		return
	}
	writeJSON(w, map[string]bool{"ok": true})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func writeJSONError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
