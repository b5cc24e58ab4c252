// Package adminserver serves the cloud's JSON admin API (docs/design.md, "Cloud
// admin API") on the admin listener, behind the admin bearer token. The wire
// types and the client are in cloud/adminapi.
package adminserver

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	api "github.com/gatehouse/gatehouse/cloud/adminapi"
	"github.com/gatehouse/gatehouse/cloud/internal/store"
)

const maxBody = 1 << 20

var (
	errUnauthorized = errors.New("missing or wrong admin token")
	errBadRequest   = errors.New("bad request")
)

// Server handles /api/v1/.
type Server struct {
	st    *store.Store
	token []byte
	log   *slog.Logger
}

// New returns the admin API for st, accepting token as the bearer.
func New(st *store.Store, token string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{st: st, token: []byte(token), log: log}
}

// Register adds the API routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	routes := map[string]func(*http.Request) (any, int, error){
		"POST /api/v1/tenants":                                 s.createTenant,
		"GET /api/v1/tenants":                                  s.listTenants,
		"POST /api/v1/tenants/{t}/sites":                       s.createSite,
		"GET /api/v1/tenants/{t}/sites":                        s.listSites,
		"POST /api/v1/tenants/{t}/groups":                      s.createGroup,
		"GET /api/v1/tenants/{t}/groups":                       s.listGroups,
		"POST /api/v1/tenants/{t}/registration-keys":           s.createKey,
		"GET /api/v1/tenants/{t}/registration-keys":            s.listKeys,
		"POST /api/v1/tenants/{t}/sites/{s}/enrollment-tokens": s.createToken,
		"GET /api/v1/tenants/{t}/relays":                       s.listRelays,
		"GET /api/v1/tenants/{t}/agents":                       s.listAgents,
		"GET /api/v1/tenants/{t}/events/count":                 s.countEvents,
		"GET /api/v1/tenants/{t}/events":                       s.queryEvents,
		"GET /api/v1/stats":                                    s.stats,
		"GET /api/v1/tenants/{t}/sites/{s}/dns-overrides":      s.getDNS,
		"PUT /api/v1/tenants/{t}/sites/{s}/dns-overrides":      s.setDNS,
		"PUT /api/v1/tenants/{t}/groups/{g}/policy":            s.setTier,
		"GET /api/v1/tenants/{t}/allow-list":                   s.getAllowList,
		"PUT /api/v1/tenants/{t}/allow-list":                   s.setAllowList,
		"POST /api/v1/tenants/{t}/agents/{a}/actions":          s.createAction,
		"POST /api/v1/tenants/{t}/actions/bulk":                s.bulkActions,
		"GET /api/v1/tenants/{t}/actions":                      s.listActions,
		"GET /api/v1/tenants/{t}/actions/{id}":                 s.getAction,
	}
	for pattern, h := range routes {
		mux.HandleFunc(pattern, s.wrap(h))
	}
	mux.HandleFunc("/api/", s.wrap(func(*http.Request) (any, int, error) {
		return nil, 0, fmt.Errorf("%w: no such endpoint", store.ErrNotFound)
	}))
}

func (s *Server) wrap(h func(*http.Request) (any, int, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			s.writeError(w, r, errUnauthorized)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		out, code, err := h(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(out)
	}
}

func (s *Server) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && len(s.token) > 0 && subtle.ConstantTimeCompare([]byte(tok), s.token) == 1
}

// statusOf is the one place errors become admin API status codes.
func statusOf(err error) int {
	switch {
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, errBadRequest), errors.Is(err, store.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict
	default:
		return http.StatusInternalServerError
	}
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := statusOf(err)
	msg := err.Error()
	if code == http.StatusInternalServerError {
		s.log.Error("admin api", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(api.ErrorBody{Error: msg})
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return nil
}

func duration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%w: valid_for %q: want a positive Go duration like 8760h", errBadRequest, s)
	}
	return d, nil
}

func (s *Server) createTenant(r *http.Request) (any, int, error) {
	var req api.NameRequest
	if err := decode(r, &req); err != nil {
		return nil, 0, err
	}
	t, err := s.st.CreateTenant(req.Name)
	if err != nil {
		return nil, 0, err
	}
	s.log.Info("tenant created", "tenant", t.ID, "name", t.Name)
	return tenant(t), http.StatusCreated, nil
}

func (s *Server) listTenants(*http.Request) (any, int, error) {
	ts, err := s.st.ListTenants()
	return mapAll(ts, tenant), http.StatusOK, err
}

func (s *Server) createSite(r *http.Request) (any, int, error) {
	var req api.NameRequest
	if err := decode(r, &req); err != nil {
		return nil, 0, err
	}
	st, err := s.st.CreateSite(r.PathValue("t"), req.Name)
	return site(st), http.StatusCreated, err
}

func (s *Server) listSites(r *http.Request) (any, int, error) {
	ss, err := s.st.ListSites(r.PathValue("t"))
	return mapAll(ss, site), http.StatusOK, err
}

func (s *Server) createGroup(r *http.Request) (any, int, error) {
	var req api.NameRequest
	if err := decode(r, &req); err != nil {
		return nil, 0, err
	}
	g, err := s.st.CreateGroup(r.PathValue("t"), req.Name)
	return group(g), http.StatusCreated, err
}

func (s *Server) listGroups(r *http.Request) (any, int, error) {
	gs, err := s.st.ListGroups(r.PathValue("t"))
	return mapAll(gs, group), http.StatusOK, err
}

func (s *Server) createKey(r *http.Request) (any, int, error) {
	var req api.CreateKeyRequest
	if err := decode(r, &req); err != nil {
		return nil, 0, err
	}
	d, err := duration(req.ValidFor)
	if err != nil {
		return nil, 0, err
	}
	if req.GroupID == "" {
		return nil, 0, fmt.Errorf("%w: group_id is required", errBadRequest)
	}
	k, err := s.st.CreateRegistrationKey(r.PathValue("t"), req.GroupID, d)
	if err != nil {
		return nil, 0, err
	}
	s.log.Info("registration key created", "tenant", k.TenantID, "group", k.GroupID, "key_id", k.ID, "expires_at", k.ExpiresAt)
	return regKey(k), http.StatusCreated, nil
}

func (s *Server) listKeys(r *http.Request) (any, int, error) {
	ks, err := s.st.ListRegistrationKeys(r.PathValue("t"))
	return mapAll(ks, regKey), http.StatusOK, err
}

func (s *Server) createToken(r *http.Request) (any, int, error) {
	var req api.CreateTokenRequest
	if err := decode(r, &req); err != nil {
		return nil, 0, err
	}
	d, err := duration(req.ValidFor)
	if err != nil {
		return nil, 0, err
	}
	text, tok, err := s.st.CreateEnrollmentToken(r.PathValue("t"), r.PathValue("s"), d)
	if err != nil {
		return nil, 0, err
	}
	return api.EnrollmentToken{Token: text, TenantID: tok.TenantID, SiteID: tok.SiteID, ExpiresAt: tok.ExpiresAt}, http.StatusCreated, nil
}

func (s *Server) listRelays(r *http.Request) (any, int, error) {
	rs, err := s.st.ListRelays(r.PathValue("t"))
	return mapAll(rs, relay), http.StatusOK, err
}

func (s *Server) listAgents(r *http.Request) (any, int, error) {
	t := r.PathValue("t")
	as, err := s.st.ListAgents(t)
	if err != nil {
		return nil, 0, err
	}
	gs, err := s.st.ListGroups(t)
	if err != nil {
		return nil, 0, err
	}
	iso, err := s.st.IsolationStates(t)
	if err != nil {
		return nil, 0, err
	}
	tiers := make(map[string]string, len(gs))
	for _, g := range gs {
		tiers[g.ID] = g.Tier
	}
	out := mapAll(as, agent)
	for i := range out {
		out[i].Isolated = iso[out[i].ID].Isolated
		out[i].Tier = tiers[out[i].GroupID]
		if out[i].Tier == "" {
			out[i].Tier = store.TierWorkstation
		}
	}
	return out, http.StatusOK, nil
}

func (s *Server) countEvents(r *http.Request) (any, int, error) {
	n, err := s.st.CountEvents(r.PathValue("t"), r.URL.Query().Get("agent_id"))
	return api.Count{Count: n}, http.StatusOK, err
}

func (s *Server) queryEvents(r *http.Request) (any, int, error) {
	q := r.URL.Query()
	var after uint64
	limit := 100
	var err error
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			return nil, 0, fmt.Errorf("%w: after %q: want a cursor", errBadRequest, v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > api.MaxLimit {
			return nil, 0, fmt.Errorf("%w: limit %q: want 1..%d", errBadRequest, v, api.MaxLimit)
		}
	}
	evs, next, err := s.st.QueryEvents(r.PathValue("t"), q.Get("agent_id"), after, limit)
	if err != nil {
		return nil, 0, err
	}
	page := api.EventsPage{Events: make([]api.Event, len(evs)), Next: next}
	for i, e := range evs {
		page.Events[i] = api.Event{Cursor: e.Cursor, AgentID: e.AgentID, Seq: e.Seq, ReceivedAt: e.ReceivedAt, Event: e.Event}
	}
	return page, http.StatusOK, nil
}

func (s *Server) stats(*http.Request) (any, int, error) {
	st, err := s.st.Stats()
	return api.Stats(st), http.StatusOK, err
}

func mapAll[T, U any](in []T, f func(T) U) []U {
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

func tenant(t store.Tenant) api.Tenant { return api.Tenant(t) }
func site(s store.Site) api.Site       { return api.Site(s) }
func group(g store.Group) api.Group {
	if g.Tier == "" {
		g.Tier = store.TierWorkstation
	}
	return api.Group(g)
}

func regKey(k store.RegistrationKey) api.RegistrationKey {
	return api.RegistrationKey{ID: k.ID, TenantID: k.TenantID, GroupID: k.GroupID, Key: k.Key,
		CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, SuccessorOf: k.SuccessorOf}
}

func relay(r store.Relay) api.Relay {
	return api.Relay{ID: r.ID, TenantID: r.TenantID, SiteID: r.SiteID, Name: r.Name, Hostname: r.Hostname,
		EnrolledAt: r.EnrolledAt, LastSeen: r.LastSeen}
}

func agent(a store.Agent) api.Agent {
	return api.Agent{ID: a.ID, TenantID: a.TenantID, GroupID: a.GroupID, Hostname: a.Hostname,
		AgentVersion: a.AgentVersion, OS: a.OS, RelayID: a.RelayID, RegisteredAt: a.RegisteredAt,
		LastSeenAt: a.LastSeenAt, LastEventAt: a.LastEventAt}
}
