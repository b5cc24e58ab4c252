package store

import (
	"encoding/json"
	"time"
)

// Every record carries its tenant, so that roles, audit and per-tenant export
// can be added without a migration.

// Tenant is one MSSP customer.
type Tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Site is a customer location with its relay cluster.
type Site struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Group is a set of agents sharing policy and rollout. Tier is its policy
// tier (TierServer or TierWorkstation; empty in records means workstation).
type Group struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Tier      string    `json:"tier,omitempty"`
}

// Relay is an enrolled relay. Only the SHA-256 of its secret is kept.
type Relay struct {
	ID         string    `json:"id"`
	TenantID   string    `json:"tenant_id"`
	SiteID     string    `json:"site_id"`
	Name       string    `json:"name"`
	Hostname   string    `json:"hostname"`
	SecretHash []byte    `json:"secret_hash"`
	PublicKey  []byte    `json:"public_key,omitempty"` // its identity key, when it proved one at enrollment
	EnrolledAt time.Time `json:"enrolled_at"`
	LastSeen   time.Time `json:"last_seen"`
}

// Agent is a registered endpoint agent. ID is hex SHA-256 of PublicKey.
type Agent struct {
	ID           string    `json:"id"`
	TenantID     string    `json:"tenant_id"`
	GroupID      string    `json:"group_id"`
	PublicKey    []byte    `json:"public_key"`
	Hostname     string    `json:"hostname"`
	AgentVersion string    `json:"agent_version"`
	OS           string    `json:"os"`
	RelayID      string    `json:"relay_id"`
	KeyID        string    `json:"key_id"`
	RegisteredAt time.Time `json:"registered_at"`
	// LastSeenAt is when the cloud last stored a batch of the agent's (any
	// relay); LastEventAt the agent's own time of its newest batch with
	// events. Zero: none yet. Kept apart from the record (activity.go).
	LastSeenAt  time.Time `json:"-"`
	LastEventAt time.Time `json:"-"`
}

// RegistrationKey lets agents join a tenant's group. The cloud and relays
// check a presented key by its SHA-256.
type RegistrationKey struct {
	ID          string    `json:"id"`
	TenantID    string    `json:"tenant_id"`
	GroupID     string    `json:"group_id"`
	Key         string    `json:"key"`
	SHA256      []byte    `json:"sha256"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	SuccessorOf string    `json:"successor_of,omitempty"`
	SuccessorID string    `json:"successor_id,omitempty"`
}

// EnrollmentToken is a single-use secret a relay trades for its identity.
// Only its hash is kept (it is the record's key).
type EnrollmentToken struct {
	TenantID  string    `json:"tenant_id"`
	SiteID    string    `json:"site_id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	UsedAt    time.Time `json:"used_at,omitzero"`
	RelayID   string    `json:"relay_id,omitempty"`
	// RelayKey is the hex key of the relay that used the token; it alone
	// may present the token again while it is valid.
	RelayKey string `json:"relay_key,omitempty"`
}

// Event is one stored ECS document with its per-tenant cursor.
type Event struct {
	Cursor     uint64    `json:"cursor"`
	AgentID    string    `json:"agent_id"`
	Seq        uint64    `json:"seq"`
	ReceivedAt time.Time `json:"received_at"`
	Event      []byte    `json:"event"`
}

// Stats are fleet-wide totals.
type Stats struct {
	Tenants          uint64 `json:"tenants"`
	Agents           uint64 `json:"agents"`
	Events           uint64 `json:"events"`
	Batches          uint64 `json:"batches"`
	DuplicateBatches uint64 `json:"duplicate_batches"`
}

// DNSRecord is one overridden RRset of a site. Values are in presentation
// form (SRV as "priority weight port target").
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

// AllowList is what a tenant's isolated agents may still reach.
type AllowList struct {
	TenantID  string    `json:"tenant_id"`
	CIDRs     []string  `json:"cidrs"`
	Names     []string  `json:"names"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Isolation is an agent's desired isolation state.
type Isolation struct {
	AgentID   string    `json:"agent_id"`
	Isolated  bool      `json:"isolated"`
	ActionID  string    `json:"action_id"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Action states.
const (
	ActionPending   = "pending"
	ActionDelivered = "delivered_to_relay"
	ActionDone      = "done"
	ActionFailed    = "failed"
)

// Action is a command for one agent. Payload is a JSON object.
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

// ActionResult is how an action ended.
type ActionResult struct {
	OK              bool      `json:"ok"`
	Reason          string    `json:"reason,omitempty"`
	Output          []byte    `json:"output,omitempty"`
	OutputTruncated bool      `json:"output_truncated,omitempty"`
	FinishedAt      time.Time `json:"finished_at"`
	RelayID         string    `json:"relay_id,omitempty"`
}
