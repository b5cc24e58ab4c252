// Package state is a site's replicated control state and its Raft state
// machine: the Store (registered agents, registration-key hashes and group
// tiers, isolation intents, DNS overrides, allow-lists, pending agent
// commands, the site's relays), the command types that change it
// (commandtypes.go: every number in use or reserved), the FSM that applies
// them, its snapshot format, and the watchers told of changes. Package
// cluster runs it in hashicorp/raft; nothing here does I/O but snapshots.
package state
