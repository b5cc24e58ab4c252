// Package action is the one definition of what each action's payload may
// hold. The cloud validates with it at its admin API (ParseJSON turns the
// API's JSON into the typed agentv1.Action once) and the agent validates
// with it again before running anything, since the relay in between is not
// trusted to have checked.
package action

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"strings"

	"github.com/gatehouse/gatehouse/internal/allowlist"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid action")

// Limits of payload fields.
const (
	MaxPathBytes         = 4096
	MaxQuarantineIDBytes = 256
	MaxPID               = 1 << 22
	MaxURLBytes          = 2048
	MaxNameBytes         = 253
)

// Name is t's name in the admin API and in logs ("quarantine_file"),
// derived from the enum so the two cannot disagree.
func Name(t agentv1.ActionType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "ACTION_TYPE_"))
}

// Parse is the type named name, false for an unknown name.
func Parse(name string) (agentv1.ActionType, bool) {
	v, ok := agentv1.ActionType_value["ACTION_TYPE_"+strings.ToUpper(name)]
	if !ok || v == 0 || strings.ToLower(name) != name {
		return 0, false
	}
	return agentv1.ActionType(v), true
}

// Names lists every action type's name in enum order.
func Names() []string {
	var out []string
	for i := 1; ; i++ {
		if _, ok := agentv1.ActionType_name[int32(i)]; !ok {
			return out
		}
		out = append(out, Name(agentv1.ActionType(i)))
	}
}

// caseOf is the type a payload case belongs to.
func caseOf(a *agentv1.Action) agentv1.ActionType {
	switch a.GetPayload().(type) {
	case *agentv1.Action_Isolate:
		return agentv1.ActionType_ACTION_TYPE_ISOLATE
	case *agentv1.Action_CancelIsolation:
		return agentv1.ActionType_ACTION_TYPE_CANCEL_ISOLATION
	case *agentv1.Action_QuarantineFile:
		return agentv1.ActionType_ACTION_TYPE_QUARANTINE_FILE
	case *agentv1.Action_RestoreFile:
		return agentv1.ActionType_ACTION_TYPE_RESTORE_FILE
	case *agentv1.Action_TerminateProcess:
		return agentv1.ActionType_ACTION_TYPE_TERMINATE_PROCESS
	case *agentv1.Action_RetrieveFile:
		return agentv1.ActionType_ACTION_TYPE_RETRIEVE_FILE
	case *agentv1.Action_RetrieveSupportBundle:
		return agentv1.ActionType_ACTION_TYPE_RETRIEVE_SUPPORT_BUNDLE
	case *agentv1.Action_SetProxy:
		return agentv1.ActionType_ACTION_TYPE_SET_PROXY
	case *agentv1.Action_ClearProxy:
		return agentv1.ActionType_ACTION_TYPE_CLEAR_PROXY
	case *agentv1.Action_HeartbeatNow:
		return agentv1.ActionType_ACTION_TYPE_HEARTBEAT_NOW
	}
	return agentv1.ActionType_ACTION_TYPE_UNSPECIFIED
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// Validate checks a's type, that its payload is that type's, and the
// payload's fields.
func Validate(a *agentv1.Action) error {
	t := a.GetType()
	if _, ok := agentv1.ActionType_name[int32(t)]; !ok || t == agentv1.ActionType_ACTION_TYPE_UNSPECIFIED {
		return invalid("action type %d: want one of %s", t, strings.Join(Names(), ", "))
	}
	if c := caseOf(a); c != t {
		return invalid("%s: payload is %s's", Name(t), Name(c))
	}
	switch t {
	case agentv1.ActionType_ACTION_TYPE_ISOLATE:
		if al := a.GetIsolate().GetAllowList(); al != nil {
			return checkAllowList(al)
		}
	case agentv1.ActionType_ACTION_TYPE_QUARANTINE_FILE:
		return checkPath(a.GetQuarantineFile().GetPath())
	case agentv1.ActionType_ACTION_TYPE_RETRIEVE_FILE:
		return checkPath(a.GetRetrieveFile().GetPath())
	case agentv1.ActionType_ACTION_TYPE_RESTORE_FILE:
		id := a.GetRestoreFile().GetQuarantineId()
		if id == "" || len(id) > MaxQuarantineIDBytes || strings.ContainsFunc(id, func(r rune) bool { return r < ' ' }) {
			return invalid("quarantine_id is required (at most %d printable characters)", MaxQuarantineIDBytes)
		}
	case agentv1.ActionType_ACTION_TYPE_TERMINATE_PROCESS:
		if pid := a.GetTerminateProcess().GetPid(); pid <= 1 || pid > MaxPID {
			return invalid("pid %d: want 2..%d", pid, MaxPID)
		}
	case agentv1.ActionType_ACTION_TYPE_SET_PROXY:
		raw := a.GetSetProxy().GetUrl()
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(raw) > MaxURLBytes {
			return invalid("url %q: want http://host:port or https://host:port", raw)
		}
	}
	return nil
}

func checkPath(p string) error {
	if !path.IsAbs(p) || len(p) > MaxPathBytes || strings.ContainsRune(p, 0) {
		return invalid("path %q: want an absolute path", p)
	}
	return nil
}

func checkAllowList(al *agentv1.IsolationAllowList) error {
	for _, c := range al.GetCidrs() {
		pf, err := netip.ParsePrefix(c)
		if err != nil {
			return invalid("allow_cidrs: %v", err)
		}
		if err := allowlist.CheckPrefix(pf.Masked()); err != nil {
			return invalid("allow_cidrs: %v", err)
		}
	}
	for _, n := range al.GetNames() {
		if n == "" || len(n) > MaxNameBytes || strings.ContainsFunc(n, func(r rune) bool { return r <= ' ' || r == '/' }) {
			return invalid("allow_names: %q is not a host name", n)
		}
	}
	return nil
}

// JSON forms of the payloads in the admin API. isolate takes {} there: the
// allow-list is the tenant's, added by the relay.
type (
	pathJSON struct {
		Path string `json:"path"`
	}
	restoreJSON struct {
		QuarantineID string `json:"quarantine_id"`
	}
	pidJSON struct {
		PID int64 `json:"pid"`
	}
	proxyJSON struct {
		URL string `json:"url"`
	}
	emptyJSON struct{}
)

// ParseJSON turns the admin API's (type name, JSON payload) into a valid
// typed action. The payload is one JSON object; unknown fields and trailing
// data are refused, and an empty payload means {}.
func ParseJSON(name string, payload []byte) (*agentv1.Action, error) {
	t, ok := Parse(name)
	if !ok {
		return nil, invalid("action type %q: want one of %s", name, strings.Join(Names(), ", "))
	}
	a := &agentv1.Action{Type: t}
	var err error
	switch t {
	case agentv1.ActionType_ACTION_TYPE_QUARANTINE_FILE, agentv1.ActionType_ACTION_TYPE_RETRIEVE_FILE:
		var p pathJSON
		err = strictJSON(payload, &p)
		if t == agentv1.ActionType_ACTION_TYPE_QUARANTINE_FILE {
			a.Payload = &agentv1.Action_QuarantineFile{QuarantineFile: &agentv1.PathPayload{Path: p.Path}}
		} else {
			a.Payload = &agentv1.Action_RetrieveFile{RetrieveFile: &agentv1.PathPayload{Path: p.Path}}
		}
	case agentv1.ActionType_ACTION_TYPE_RESTORE_FILE:
		var p restoreJSON
		err = strictJSON(payload, &p)
		a.Payload = &agentv1.Action_RestoreFile{RestoreFile: &agentv1.RestoreFilePayload{QuarantineId: p.QuarantineID}}
	case agentv1.ActionType_ACTION_TYPE_TERMINATE_PROCESS:
		var p pidJSON
		err = strictJSON(payload, &p)
		a.Payload = &agentv1.Action_TerminateProcess{TerminateProcess: &agentv1.TerminateProcessPayload{Pid: p.PID}}
	case agentv1.ActionType_ACTION_TYPE_SET_PROXY:
		var p proxyJSON
		err = strictJSON(payload, &p)
		a.Payload = &agentv1.Action_SetProxy{SetProxy: &agentv1.SetProxyPayload{Url: p.URL}}
	default:
		var p emptyJSON
		err = strictJSON(payload, &p)
		setEmpty(a)
	}
	if err != nil {
		return nil, err
	}
	if err := Validate(a); err != nil {
		return nil, err
	}
	return a, nil
}

// setEmpty sets the payload case of the types without parameters.
func setEmpty(a *agentv1.Action) {
	e := &agentv1.EmptyPayload{}
	switch a.GetType() {
	case agentv1.ActionType_ACTION_TYPE_ISOLATE:
		a.Payload = &agentv1.Action_Isolate{Isolate: &agentv1.IsolatePayload{}}
	case agentv1.ActionType_ACTION_TYPE_CANCEL_ISOLATION:
		a.Payload = &agentv1.Action_CancelIsolation{CancelIsolation: e}
	case agentv1.ActionType_ACTION_TYPE_RETRIEVE_SUPPORT_BUNDLE:
		a.Payload = &agentv1.Action_RetrieveSupportBundle{RetrieveSupportBundle: e}
	case agentv1.ActionType_ACTION_TYPE_CLEAR_PROXY:
		a.Payload = &agentv1.Action_ClearProxy{ClearProxy: e}
	case agentv1.ActionType_ACTION_TYPE_HEARTBEAT_NOW:
		a.Payload = &agentv1.Action_HeartbeatNow{HeartbeatNow: e}
	}
}

// New is a valid action of type t without parameters (isolate without an
// allow-list, cancel_isolation, heartbeat_now, ...).
func New(t agentv1.ActionType) *agentv1.Action {
	a := &agentv1.Action{Type: t}
	setEmpty(a)
	return a
}

// JSON is a's payload in the admin API's canonical JSON form.
func JSON(a *agentv1.Action) ([]byte, error) {
	var v any = emptyJSON{}
	switch p := a.GetPayload().(type) {
	case *agentv1.Action_QuarantineFile:
		v = pathJSON{p.QuarantineFile.GetPath()}
	case *agentv1.Action_RetrieveFile:
		v = pathJSON{p.RetrieveFile.GetPath()}
	case *agentv1.Action_RestoreFile:
		v = restoreJSON{p.RestoreFile.GetQuarantineId()}
	case *agentv1.Action_TerminateProcess:
		v = pidJSON{p.TerminateProcess.GetPid()}
	case *agentv1.Action_SetProxy:
		v = proxyJSON{p.SetProxy.GetUrl()}
	}
	return json.Marshal(v)
}

func strictJSON(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		b = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalid("payload: %v", err)
	}
	if dec.More() {
		return invalid("payload: trailing data")
	}
	return nil
}
