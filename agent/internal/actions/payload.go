package actions

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
)

// Action types, as cloud/internal/store names them.
const (
	TypeIsolate               = "isolate"
	TypeCancelIsolation       = "cancel_isolation"
	TypeQuarantineFile        = "quarantine_file"
	TypeRestoreFile           = "restore_file"
	TypeTerminateProcess      = "terminate_process"
	TypeRetrieveFile          = "retrieve_file"
	TypeRetrieveSupportBundle = "retrieve_support_bundle"
	TypeSetProxy              = "set_proxy"
	TypeClearProxy            = "clear_proxy"
	TypeHeartbeatNow          = "heartbeat_now"
)

// MaxPayloadBytes bounds a payload (the cloud allows 4 KiB; an isolate
// payload enriched by the relay with the allow-list may be larger).
const MaxPayloadBytes = 256 << 10

// ErrPayload is wrapped by every payload decoding error.
var ErrPayload = errors.New("bad payload")

type (
	// IsolatePayload is {} from the cloud; the relay may add the tenant's
	// allow-list (the control poll's AllowList) before delivering it.
	IsolatePayload struct {
		AllowCIDRs []string `json:"allow_cidrs,omitempty"`
		AllowNames []string `json:"allow_names,omitempty"`
	}
	// PathPayload is quarantine_file and retrieve_file's payload.
	PathPayload struct {
		Path string `json:"path"`
	}
	// QuarantinePayload is restore_file's payload.
	QuarantinePayload struct {
		QuarantineID string `json:"quarantine_id"`
	}
	// PIDPayload is terminate_process's payload.
	PIDPayload struct {
		PID int64 `json:"pid"`
	}
	// ProxyPayload is set_proxy's payload.
	ProxyPayload struct {
		URL string `json:"url"`
	}
	emptyPayload struct{}
)

// strictJSON decodes one JSON object into v, refusing unknown fields and
// trailing data; an empty payload means {}.
func strictJSON(b []byte, v any) error {
	if len(b) > MaxPayloadBytes {
		return fmt.Errorf("%w: %d bytes, over %d", ErrPayload, len(b), MaxPayloadBytes)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		b = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrPayload, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", ErrPayload)
	}
	return nil
}

func decodeEmpty(b []byte) error {
	var p emptyPayload
	return strictJSON(b, &p)
}

// DecodeIsolate decodes and checks an isolate payload.
func DecodeIsolate(b []byte) (cidrs []netip.Prefix, names []string, err error) {
	var p IsolatePayload
	if err := strictJSON(b, &p); err != nil {
		return nil, nil, err
	}
	for _, c := range p.AllowCIDRs {
		pf, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: allow_cidrs: %v", ErrPayload, err)
		}
		if err := allowlist.CheckPrefix(pf.Masked()); err != nil {
			return nil, nil, fmt.Errorf("%w: allow_cidrs: %v", ErrPayload, err)
		}
		cidrs = append(cidrs, pf.Masked())
	}
	for _, n := range p.AllowNames {
		if n == "" || len(n) > 253 || strings.ContainsFunc(n, func(r rune) bool { return r <= ' ' || r == '/' }) {
			return nil, nil, fmt.Errorf("%w: allow_names: %q is not a host name", ErrPayload, n)
		}
		names = append(names, n)
	}
	return cidrs, names, nil
}

// DecodePath decodes and checks a {"path"} payload.
func DecodePath(b []byte) (string, error) {
	var p PathPayload
	if err := strictJSON(b, &p); err != nil {
		return "", err
	}
	if !path.IsAbs(p.Path) || len(p.Path) > 4096 || strings.ContainsRune(p.Path, 0) {
		return "", fmt.Errorf("%w: path %q: want an absolute path", ErrPayload, p.Path)
	}
	return path.Clean(p.Path), nil
}

// DecodeQuarantineID decodes and checks a {"quarantine_id"} payload. The
// agent's ids are 32 hex digits, so anything else (such as "../x") is
// refused before it reaches the file system.
func DecodeQuarantineID(b []byte) (string, error) {
	var p QuarantinePayload
	if err := strictJSON(b, &p); err != nil {
		return "", err
	}
	if !validQuarantineID(p.QuarantineID) {
		return "", fmt.Errorf("%w: quarantine_id %q: want 32 hex digits", ErrPayload, p.QuarantineID)
	}
	return p.QuarantineID, nil
}

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

// DecodePID decodes and checks a {"pid"} payload.
func DecodePID(b []byte) (int, error) {
	var p PIDPayload
	if err := strictJSON(b, &p); err != nil {
		return 0, err
	}
	if p.PID <= 1 || p.PID > 1<<22 {
		return 0, fmt.Errorf("%w: pid %d: want 2..%d", ErrPayload, p.PID, 1<<22)
	}
	return int(p.PID), nil
}

// DecodeProxy decodes and checks a {"url"} payload.
func DecodeProxy(b []byte) (string, error) {
	var p ProxyPayload
	if err := strictJSON(b, &p); err != nil {
		return "", err
	}
	u, err := url.Parse(p.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(p.URL) > 2048 {
		return "", fmt.Errorf("%w: url %q: want http://host:port or https://host:port", ErrPayload, p.URL)
	}
	return p.URL, nil
}
