package adminserver

import (
	"net/http"

	api "github.com/gatehouse/gatehouse/cloud/adminapi"
	"github.com/gatehouse/gatehouse/cloud/internal/store"
)

// Control-plane routes: DNS overrides, group tiers, allow-lists, actions.

func (s *Server) getDNS(r *http.Request) (any, int, error) {
	o, err := s.st.GetDNSOverrides(r.PathValue("t"), r.PathValue("s"))
	return dnsOverrides(o), http.StatusOK, err
}

func (s *Server) setDNS(r *http.Request) (any, int, error) {
	var req api.SetDNSRequest
	if err := decode(r, &req); err != nil {
		return nil, 0, err
	}
	recs := make([]store.DNSRecord, len(req.Records))
	for i, rec := range req.Records {
		recs[i] = store.DNSRecord(rec)
	}
	o, err := s.st.SetDNSOverrides(r.PathValue("t"), r.PathValue("s"), recs)
	if err != nil {
		return nil, 0, err
	}
	s.log.Info("dns overrides set", "tenant", o.TenantID, "site", o.SiteID, "records", len(o.Records))
	return dnsOverrides(o), http.StatusOK, nil
}

func dnsOverrides(o store.DNSOverrides) api.DNSOverrides {
	out := api.DNSOverrides{TenantID: o.TenantID, SiteID: o.SiteID, UpdatedAt: o.UpdatedAt, Records: make([]api.DNSRecord, len(o.Records))}
	for i, r := range o.Records {
		out.Records[i] = api.DNSRecord(r)
	}
	return out
}

func (s *Server) setTier(r *http.Request) (any, int, error) {
	var req api.SetTierRequest
	if err := decode(r, &req); err != nil {
		return nil, 0, err
	}
	g, err := s.st.SetGroupTier(r.PathValue("t"), r.PathValue("g"), req.Tier)
	if err != nil {
		return nil, 0, err
	}
	s.log.Info("group tier set", "tenant", g.TenantID, "group", g.ID, "tier", g.Tier)
	return group(g), http.StatusOK, nil
}

func (s *Server) getAllowList(r *http.Request) (any, int, error) {
	al, err := s.st.GetAllowList(r.PathValue("t"))
	return allowList(al), http.StatusOK, err
}

func (s *Server) setAllowList(r *http.Request) (any, int, error) {
	var req api.SetAllowListRequest
	if err := decode(r, &req); err != nil {
		return nil, 0, err
	}
	al, err := s.st.SetAllowList(r.PathValue("t"), req.CIDRs, req.Names)
	if err != nil {
		return nil, 0, err
	}
	s.log.Info("allow-list set", "tenant", al.TenantID, "cidrs", len(al.CIDRs), "names", len(al.Names))
	return allowList(al), http.StatusOK, nil
}

func allowList(a store.AllowList) api.AllowList { return api.AllowList(a) }

func (s *Server) createAction(r *http.Request) (any, int, error) {
	var req api.CreateActionRequest
	if err := decode(r, &req); err != nil {
		return nil, 0, err
	}
	a, err := s.st.CreateAction(r.PathValue("t"), r.PathValue("a"), req.Type, req.Payload)
	if err != nil {
		return nil, 0, err
	}
	s.log.Info("action created", "tenant", a.TenantID, "agent", a.AgentID, "action", a.ID, "type", a.Type)
	return action(a), http.StatusCreated, nil
}

func (s *Server) bulkActions(r *http.Request) (any, int, error) {
	var req api.BulkActionRequest
	if err := decode(r, &req); err != nil {
		return nil, 0, err
	}
	as, err := s.st.CreateBulkActions(r.PathValue("t"), req.AgentIDs, req.GroupID, req.Type, req.Payload)
	if err != nil {
		return nil, 0, err
	}
	s.log.Info("bulk actions created", "tenant", r.PathValue("t"), "type", req.Type, "group", req.GroupID, "actions", len(as))
	return api.BulkActions{Actions: mapAll(as, action)}, http.StatusCreated, nil
}

func (s *Server) listActions(r *http.Request) (any, int, error) {
	q := r.URL.Query()
	as, err := s.st.ListActions(r.PathValue("t"), q.Get("agent_id"), q.Get("state"))
	return mapAll(as, action), http.StatusOK, err
}

func (s *Server) getAction(r *http.Request) (any, int, error) {
	a, err := s.st.GetAction(r.PathValue("t"), r.PathValue("id"))
	return action(a), http.StatusOK, err
}

func action(a store.Action) api.Action {
	out := api.Action{ID: a.ID, TenantID: a.TenantID, AgentID: a.AgentID, Type: a.Type, Payload: a.Payload,
		State: a.State, CreatedAt: a.CreatedAt, DeliveredAt: a.DeliveredAt, RelayID: a.RelayID}
	if a.Result != nil {
		out.Result = &api.ActionResult{OK: a.Result.OK, Reason: a.Result.Reason, Output: a.Result.Output,
			OutputTruncated: a.Result.OutputTruncated, FinishedAt: a.Result.FinishedAt}
	}
	return out
}
