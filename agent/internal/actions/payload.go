package actions

import (
	"net/netip"
	"path"
	"strings"

	"github.com/gatehouse/gatehouse/internal/action"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// Action type names, as the done log and the logs record them (the admin
// API's names, internal/action.Name).
var (
	TypeIsolate               = action.Name(agentv1.ActionType_ACTION_TYPE_ISOLATE)
	TypeCancelIsolation       = action.Name(agentv1.ActionType_ACTION_TYPE_CANCEL_ISOLATION)
	TypeQuarantineFile        = action.Name(agentv1.ActionType_ACTION_TYPE_QUARANTINE_FILE)
	TypeRestoreFile           = action.Name(agentv1.ActionType_ACTION_TYPE_RESTORE_FILE)
	TypeTerminateProcess      = action.Name(agentv1.ActionType_ACTION_TYPE_TERMINATE_PROCESS)
	TypeRetrieveFile          = action.Name(agentv1.ActionType_ACTION_TYPE_RETRIEVE_FILE)
	TypeRetrieveSupportBundle = action.Name(agentv1.ActionType_ACTION_TYPE_RETRIEVE_SUPPORT_BUNDLE)
	TypeSetProxy              = action.Name(agentv1.ActionType_ACTION_TYPE_SET_PROXY)
	TypeClearProxy            = action.Name(agentv1.ActionType_ACTION_TYPE_CLEAR_PROXY)
	TypeHeartbeatNow          = action.Name(agentv1.ActionType_ACTION_TYPE_HEARTBEAT_NOW)
)

// isolatePolicy is an isolate payload's allow-list, already validated by
// action.Validate; hasList is false when the payload carries none.
func isolatePolicy(p *agentv1.IsolatePayload) (cidrs []netip.Prefix, names []string, hasList bool) {
	al := p.GetAllowList()
	if al == nil {
		return nil, nil, false
	}
	for _, c := range al.GetCidrs() {
		if pf, err := netip.ParsePrefix(c); err == nil {
			cidrs = append(cidrs, pf.Masked())
		}
	}
	return cidrs, al.GetNames(), true
}

// cleanPath is a validated absolute path in canonical form.
func cleanPath(p string) string { return path.Clean(p) }

// validQuarantineID is the agent's own id format (32 hex digits), checked
// on top of action.Validate: anything else (such as "../x") is refused
// before it reaches the file system.
func validQuarantineID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, r := range id {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}
