// Package ecs holds the Elastic Common Schema fields every agent event
// shares, in ECS's nested JSON form.
package ecs

import "time"

// Event is the ECS "event" object.
type Event struct {
	Kind     string   `json:"kind"`
	Category []string `json:"category"`
	Type     []string `json:"type"`
	Action   string   `json:"action,omitempty"`
	Dataset  string   `json:"dataset"`
	Module   string   `json:"module,omitempty"`
	Code     string   `json:"code,omitempty"`
	Provider string   `json:"provider,omitempty"`
	Outcome  string   `json:"outcome,omitempty"`
}

// Host is the ECS "host" object (only what every event carries).
type Host struct {
	Hostname string `json:"hostname"`
}

// Agent is the ECS "agent" object.
type Agent struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	Type    string `json:"type"`
}

// Base is embedded by every event document.
type Base struct {
	Timestamp string `json:"@timestamp"`
	Event     Event  `json:"event"`
	Host      Host   `json:"host"`
	Agent     Agent  `json:"agent"`
}

// Source names the agent that makes the events.
type Source struct {
	Hostname string
	AgentID  string
	Version  string
}

// NewBase fills the common fields for an event made at t.
func (s Source) NewBase(t time.Time, ev Event) Base {
	return Base{
		Timestamp: t.UTC().Format(time.RFC3339Nano),
		Event:     ev,
		Host:      Host{Hostname: s.Hostname},
		Agent:     Agent{ID: s.AgentID, Version: s.Version, Type: "gatehouse"},
	}
}
