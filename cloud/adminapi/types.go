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

// Group is a set of agents.
type Group struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
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
