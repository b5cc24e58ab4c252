package cluster

import "github.com/gatehouse/gatehouse/cluster/state"

// The replicated state and its commands live in package state; these names
// keep the node's API in one place for its callers.

type (
	// Store is the local (possibly slightly stale) read side of the state.
	Store = state.Store
	// Kinds is a set of state kinds, for watchers.
	Kinds = state.Kinds
	// Watcher is told when the kinds it watches change.
	Watcher = state.Watcher
	// CommandType numbers a write (state/commandtypes.go).
	CommandType = state.CommandType
	// Command is one typed write.
	Command = state.Command
)

const (
	KindAgents           = state.KindAgents
	KindRegistrationKeys = state.KindRegistrationKeys
	KindIsolation        = state.KindIsolation
	KindDNS              = state.KindDNS
	KindAllowLists       = state.KindAllowLists
	KindCommands         = state.KindCommands
	KindMembers          = state.KindMembers
	KindAll              = state.KindAll

	IgnoreIfUnknown        = state.IgnoreIfUnknown
	CmdRegisterAgent       = state.CmdRegisterAgent
	CmdReconcileAgent      = state.CmdReconcileAgent
	CmdDeregisterAgent     = state.CmdDeregisterAgent
	CmdSetRegistrationKeys = state.CmdSetRegistrationKeys
	CmdSetIsolation        = state.CmdSetIsolation
	CmdSetDNSOverride      = state.CmdSetDNSOverride
	CmdDeleteDNSOverride   = state.CmdDeleteDNSOverride
	CmdSetAllowList        = state.CmdSetAllowList
	CmdDeleteAllowList     = state.CmdDeleteAllowList
	CmdEnqueueCommand      = state.CmdEnqueueCommand
	CmdCompleteCommand     = state.CmdCompleteCommand
	CmdUpsertMember        = state.CmdUpsertMember
	CmdRemoveMember        = state.CmdRemoveMember
)
