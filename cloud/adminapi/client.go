package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls the admin API.
type Client struct {
	base  string
	token string
	// HTTP is the client used; replace it for proxies or timeouts.
	HTTP *http.Client
}

// NewClient returns a client for baseURL (e.g. "http://127.0.0.1:9200")
// authenticating with the admin token.
func NewClient(baseURL, token string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, HTTP: &http.Client{Timeout: time.Minute}}
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb ErrorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(b))
		}
		return &Error{StatusCode: resp.StatusCode, Message: eb.Error}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

func tpath(tenant string, rest ...string) string {
	p := "/api/v1/tenants/" + url.PathEscape(tenant)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// CreateTenant creates a tenant.
func (c *Client) CreateTenant(ctx context.Context, name string) (Tenant, error) {
	var t Tenant
	return t, c.do(ctx, "POST", "/api/v1/tenants", nil, NameRequest{Name: name}, &t)
}

// ListTenants lists tenants.
func (c *Client) ListTenants(ctx context.Context) ([]Tenant, error) {
	var ts []Tenant
	return ts, c.do(ctx, "GET", "/api/v1/tenants", nil, nil, &ts)
}

// CreateSite creates a site in a tenant.
func (c *Client) CreateSite(ctx context.Context, tenant, name string) (Site, error) {
	var s Site
	return s, c.do(ctx, "POST", tpath(tenant, "sites"), nil, NameRequest{Name: name}, &s)
}

// ListSites lists a tenant's sites.
func (c *Client) ListSites(ctx context.Context, tenant string) ([]Site, error) {
	var s []Site
	return s, c.do(ctx, "GET", tpath(tenant, "sites"), nil, nil, &s)
}

// CreateGroup creates a group in a tenant.
func (c *Client) CreateGroup(ctx context.Context, tenant, name string) (Group, error) {
	var g Group
	return g, c.do(ctx, "POST", tpath(tenant, "groups"), nil, NameRequest{Name: name}, &g)
}

// ListGroups lists a tenant's groups.
func (c *Client) ListGroups(ctx context.Context, tenant string) ([]Group, error) {
	var g []Group
	return g, c.do(ctx, "GET", tpath(tenant, "groups"), nil, nil, &g)
}

// CreateRegistrationKey makes a key for a tenant's group; validFor 0 means
// the server's default (one year).
func (c *Client) CreateRegistrationKey(ctx context.Context, tenant, group string, validFor time.Duration) (RegistrationKey, error) {
	req := CreateKeyRequest{GroupID: group}
	if validFor > 0 {
		req.ValidFor = validFor.String()
	}
	var k RegistrationKey
	return k, c.do(ctx, "POST", tpath(tenant, "registration-keys"), nil, req, &k)
}

// ListRegistrationKeys lists a tenant's keys.
func (c *Client) ListRegistrationKeys(ctx context.Context, tenant string) ([]RegistrationKey, error) {
	var k []RegistrationKey
	return k, c.do(ctx, "GET", tpath(tenant, "registration-keys"), nil, nil, &k)
}

// CreateEnrollmentToken makes a relay enrollment token for a tenant's site;
// validFor 0 means the server's default (24h).
func (c *Client) CreateEnrollmentToken(ctx context.Context, tenant, site string, validFor time.Duration) (EnrollmentToken, error) {
	var req CreateTokenRequest
	if validFor > 0 {
		req.ValidFor = validFor.String()
	}
	var t EnrollmentToken
	return t, c.do(ctx, "POST", tpath(tenant, "sites", url.PathEscape(site), "enrollment-tokens"), nil, req, &t)
}

// ListRelays lists a tenant's relays.
func (c *Client) ListRelays(ctx context.Context, tenant string) ([]Relay, error) {
	var r []Relay
	return r, c.do(ctx, "GET", tpath(tenant, "relays"), nil, nil, &r)
}

// ListAgents lists a tenant's agents.
func (c *Client) ListAgents(ctx context.Context, tenant string) ([]Agent, error) {
	var a []Agent
	return a, c.do(ctx, "GET", tpath(tenant, "agents"), nil, nil, &a)
}

// CountEvents counts a tenant's events, or one agent's when agentID is set.
func (c *Client) CountEvents(ctx context.Context, tenant, agentID string) (uint64, error) {
	q := url.Values{}
	if agentID != "" {
		q.Set("agent_id", agentID)
	}
	var n Count
	err := c.do(ctx, "GET", tpath(tenant, "events", "count"), q, nil, &n)
	return n.Count, err
}

// QueryEvents returns events with cursor > after (limit 0: server default).
func (c *Client) QueryEvents(ctx context.Context, tenant, agentID string, after uint64, limit int) (EventsPage, error) {
	q := url.Values{}
	if agentID != "" {
		q.Set("agent_id", agentID)
	}
	if after > 0 {
		q.Set("after", strconv.FormatUint(after, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var p EventsPage
	return p, c.do(ctx, "GET", tpath(tenant, "events"), q, nil, &p)
}

// Stats returns fleet-wide totals.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	return s, c.do(ctx, "GET", "/api/v1/stats", nil, nil, &s)
}

// GetDNSOverrides returns a site's DNS overrides.
func (c *Client) GetDNSOverrides(ctx context.Context, tenant, site string) (DNSOverrides, error) {
	var o DNSOverrides
	return o, c.do(ctx, "GET", tpath(tenant, "sites", url.PathEscape(site), "dns-overrides"), nil, nil, &o)
}

// SetDNSOverrides replaces a site's DNS overrides.
func (c *Client) SetDNSOverrides(ctx context.Context, tenant, site string, recs []DNSRecord) (DNSOverrides, error) {
	if recs == nil {
		recs = []DNSRecord{}
	}
	var o DNSOverrides
	return o, c.do(ctx, "PUT", tpath(tenant, "sites", url.PathEscape(site), "dns-overrides"), nil, SetDNSRequest{Records: recs}, &o)
}

// SetGroupTier sets a group's policy tier ("server" or "workstation").
func (c *Client) SetGroupTier(ctx context.Context, tenant, group, tier string) (Group, error) {
	var g Group
	return g, c.do(ctx, "PUT", tpath(tenant, "groups", url.PathEscape(group), "policy"), nil, SetTierRequest{Tier: tier}, &g)
}

// GetAllowList returns a tenant's allow-list.
func (c *Client) GetAllowList(ctx context.Context, tenant string) (AllowList, error) {
	var a AllowList
	return a, c.do(ctx, "GET", tpath(tenant, "allow-list"), nil, nil, &a)
}

// SetAllowList replaces a tenant's allow-list.
func (c *Client) SetAllowList(ctx context.Context, tenant string, cidrs, names []string) (AllowList, error) {
	req := SetAllowListRequest{CIDRs: cidrs, Names: names}
	if req.CIDRs == nil {
		req.CIDRs = []string{}
	}
	if req.Names == nil {
		req.Names = []string{}
	}
	var a AllowList
	return a, c.do(ctx, "PUT", tpath(tenant, "allow-list"), nil, req, &a)
}

// CreateAction queues an action for an agent; payload nil means {}.
func (c *Client) CreateAction(ctx context.Context, tenant, agent, typ string, payload json.RawMessage) (Action, error) {
	var a Action
	return a, c.do(ctx, "POST", tpath(tenant, "agents", url.PathEscape(agent), "actions"), nil, CreateActionRequest{Type: typ, Payload: payload}, &a)
}

// CreateBulkActions queues one action for several agents or a group.
func (c *Client) CreateBulkActions(ctx context.Context, tenant string, req BulkActionRequest) ([]Action, error) {
	var b BulkActions
	return b.Actions, c.do(ctx, "POST", tpath(tenant, "actions", "bulk"), nil, req, &b)
}

// ListActions lists a tenant's actions, oldest first, filtered by agent and
// state when set.
func (c *Client) ListActions(ctx context.Context, tenant, agent, state string) ([]Action, error) {
	q := url.Values{}
	if agent != "" {
		q.Set("agent_id", agent)
	}
	if state != "" {
		q.Set("state", state)
	}
	var a []Action
	return a, c.do(ctx, "GET", tpath(tenant, "actions"), q, nil, &a)
}

// GetAction returns one action.
func (c *Client) GetAction(ctx context.Context, tenant, id string) (Action, error) {
	var a Action
	return a, c.do(ctx, "GET", tpath(tenant, "actions", url.PathEscape(id)), nil, nil, &a)
}

// WaitAction polls an action every interval until it is done or failed, or
// ctx ends.
func (c *Client) WaitAction(ctx context.Context, tenant, id string, interval time.Duration) (Action, error) {
	if interval <= 0 {
		interval = 500 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		a, err := c.GetAction(ctx, tenant, id)
		if err != nil || a.Finished() {
			return a, err
		}
		select {
		case <-ctx.Done():
			return a, fmt.Errorf("wait for action %s (state %s): %w", id, a.State, ctx.Err())
		case <-t.C:
		}
	}
}
