package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/cluster"
)

// clusterRoutes adds the admin endpoints `gatehouse-relay cluster status,
// leave, remove` talk to.
func (d *Daemon) clusterRoutes() {
	d.admin.Mux.HandleFunc("GET /v1/cluster/status", func(w http.ResponseWriter, _ *http.Request) {
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
