// Package adminapi holds the types of the cloud's JSON admin API
// (docs/design.md, "Cloud admin API") and a Go client for it, used by
// gatehousectl and the system tests.
package adminapi

import (
	"encoding/json"
	"fmt"
	"time"
)

// Tenant is an MSSP customer.
type Tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Site is a customer location with its relays.
type Site struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Group is a set of agents. Tier is its policy tier: "server" or
// "workstation" (the default).
type Group struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Tier      string    `json:"tier"`
}

// RegistrationKey lets agents join a tenant's group.
type RegistrationKey struct {
	ID          string    `json:"id"`
	TenantID    string    `json:"tenant_id"`
	GroupID     string    `json:"group_id"`
	Key         string    `json:"key"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	SuccessorOf string    `json:"successor_of,omitempty"`
}

// EnrollmentToken is a single-use token a relay enrolls with.
type EnrollmentToken struct {
	Token     string    `json:"token"`
	TenantID  string    `json:"tenant_id"`
	SiteID    string    `json:"site_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Relay is an enrolled relay.
type Relay struct {
	ID         string    `json:"id"`
	TenantID   string    `json:"tenant_id"`
	SiteID     string    `json:"site_id"`
	Name       string    `json:"name"`
	Hostname   string    `json:"hostname"`
	EnrolledAt time.Time `json:"enrolled_at"`
	LastSeen   time.Time `json:"last_seen"`
}

// Agent is a registered agent.
type Agent struct {
	ID           string    `json:"id"`
	TenantID     string    `json:"tenant_id"`
	GroupID      string    `json:"group_id"`
	Hostname     string    `json:"hostname"`
	AgentVersion string    `json:"agent_version"`
	OS           string    `json:"os"`
	RelayID      string    `json:"relay_id"`
	RegisteredAt time.Time `json:"registered_at"`
	// LastSeenAt is when the cloud last stored a batch from the agent
	// (through any relay); absent: never.
	LastSeenAt time.Time `json:"last_seen_at,omitzero"`
	// LastEventAt is the agent's own time of its newest batch with events
	// (the agent's clock); absent: none yet.
	LastEventAt time.Time `json:"last_event_at,omitzero"`
	// Isolated is the desired isolation state (set by isolate and
	// cancel_isolation actions).
	Isolated bool `json:"isolated"`
	// Tier is the policy tier of the agent's group.
	Tier string `json:"tier"`
}

// Event is one stored ECS event; Event is its raw JSON.
type Event struct {
	Cursor     uint64          `json:"cursor"`
	AgentID    string          `json:"agent_id"`
	Seq        uint64          `json:"seq"`
	ReceivedAt time.Time       `json:"received_at"`
	Event      json.RawMessage `json:"event"`
}

// EventsPage is one page of a query; pass Next as `after` for the next page.
type EventsPage struct {
	Events []Event `json:"events"`
	Next   uint64  `json:"next"`
}

// Count answers an event count.
type Count struct {
	Count uint64 `json:"count"`
}

// Stats are fleet-wide totals.
type Stats struct {
	Tenants          uint64 `json:"tenants"`
	Agents           uint64 `json:"agents"`
	Events           uint64 `json:"events"`
	Batches          uint64 `json:"batches"`
	DuplicateBatches uint64 `json:"duplicate_batches"`
}

// NameRequest creates a tenant, site or group.
type NameRequest struct {
	Name string `json:"name"`
}

// CreateKeyRequest creates a registration key. ValidFor is a Go duration
// ("8760h"); empty means one year.
type CreateKeyRequest struct {
	GroupID  string `json:"group_id"`
	ValidFor string `json:"valid_for,omitempty"`
}

// CreateTokenRequest creates an enrollment token. ValidFor is a Go
// duration; empty means 24h.
type CreateTokenRequest struct {
	ValidFor string `json:"valid_for,omitempty"`
}

// DNSRecord is one overridden RRset: type A, AAAA, CNAME, SRV or TXT;
// values in presentation form (SRV as "priority weight port target"); TTL in
// seconds (0: 60). The server answers names fully qualified and lower case.
type DNSRecord struct {
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	Values []string `json:"values"`
	TTL    uint32   `json:"ttl"`
}

// DNSOverrides is a site's whole set of DNS overrides.
type DNSOverrides struct {
	TenantID  string      `json:"tenant_id"`
	SiteID    string      `json:"site_id"`
	Records   []DNSRecord `json:"records"`
	UpdatedAt time.Time   `json:"updated_at,omitzero"`
}

// SetDNSRequest replaces a site's DNS overrides.
type SetDNSRequest struct {
	Records []DNSRecord `json:"records"`
}

// SetTierRequest sets a group's policy tier.
type SetTierRequest struct {
	Tier string `json:"tier"`
}

// AllowList is what a tenant's isolated agents may still reach: CIDRs (an
// address alone is a /32 or /128) and DNS names.
type AllowList struct {
	TenantID  string    `json:"tenant_id,omitempty"`
	CIDRs     []string  `json:"cidrs"`
	Names     []string  `json:"names"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// SetAllowListRequest replaces a tenant's allow-list.
type SetAllowListRequest struct {
	CIDRs []string `json:"cidrs"`
	Names []string `json:"names"`
}

// Action states.
const (
	ActionPending   = "pending"
	ActionDelivered = "delivered_to_relay"
	ActionDone      = "done"
	ActionFailed    = "failed"
)

// Action is a command for one agent.
type Action struct {
	ID          string          `json:"id"`
	TenantID    string          `json:"tenant_id"`
	AgentID     string          `json:"agent_id"`
	Type        string          `json:"type"`
	Payload     json.RawMessage `json:"payload"`
	State       string          `json:"state"`
	CreatedAt   time.Time       `json:"created_at"`
	DeliveredAt time.Time       `json:"delivered_at,omitzero"`
	RelayID     string          `json:"relay_id,omitempty"`
	Result      *ActionResult   `json:"result,omitempty"`
}

// Finished reports whether the action is done or failed.
func (a Action) Finished() bool { return a.State == ActionDone || a.State == ActionFailed }

// ActionResult is how an action ended. Output is base64 in JSON, at most
// 1 MiB (OutputTruncated when the agent sent more).
type ActionResult struct {
	OK              bool      `json:"ok"`
	Reason          string    `json:"reason,omitempty"`
	Output          []byte    `json:"output,omitempty"`
	OutputTruncated bool      `json:"output_truncated,omitempty"`
	FinishedAt      time.Time `json:"finished_at"`
}

// CreateActionRequest queues an action; Payload is a JSON object (see
// docs/design.md for each type's fields), empty meaning {}.
type CreateActionRequest struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// BulkActionRequest queues one action for several agents: AgentIDs, or
// every agent of GroupID.
type BulkActionRequest struct {
	AgentIDs []string        `json:"agent_ids,omitempty"`
	GroupID  string          `json:"group_id,omitempty"`
	Type     string          `json:"type"`
	Payload  json.RawMessage `json:"payload,omitempty"`
}

// BulkActions answers a bulk request.
type BulkActions struct {
	Actions []Action `json:"actions"`
}

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
}

// MaxLimit is the largest page QueryEvents serves.
const MaxLimit = 10000

// Error is a non-2xx answer.
type Error struct {
	StatusCode int
	Message    string
}

func (e *Error) Error() string { return fmt.Sprintf("admin api: %d: %s", e.StatusCode, e.Message) }
