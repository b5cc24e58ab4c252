package ingress

import (
	"errors"
	"fmt"

	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// connError ends a connection: the agent gets an Error frame with code,
// then the connection closes with the matching QUIC application code (over
// TCP the Error frame alone carries the code).
type connError struct {
	code agentv1.Error_Code
	msg  string
}

func (e *connError) Error() string { return fmt.Sprintf("%s: %s", e.code, e.msg) }

func failf(code agentv1.Error_Code, format string, a ...any) *connError {
	return &connError{code: code, msg: fmt.Sprintf(format, a...)}
}

// frameError turns a framing error into the connection error it causes.
func frameError(err error) *connError {
	switch {
	case errors.Is(err, framing.ErrFrameTooLarge):
		return failf(agentv1.Error_CODE_FRAME_TOO_LARGE, "%v", err)
	default:
		return failf(agentv1.Error_CODE_BAD_FRAME, "%v", err)
	}
}

// The one place error codes become QUIC close codes and metric reasons.
func closeCode(c agentv1.Error_Code) uint64 {
	switch c {
	case agentv1.Error_CODE_UNKNOWN_AGENT:
		return framing.CloseUnknownAgent
	case agentv1.Error_CODE_KEY_INVALID:
		return framing.CloseKeyInvalid
	case agentv1.Error_CODE_KEY_EXPIRED:
		return framing.CloseKeyExpired
	case agentv1.Error_CODE_UNAVAILABLE, agentv1.Error_CODE_INTERNAL:
		return framing.CloseUnavailable
	default:
		return framing.CloseProtocol
	}
}

func reason(c agentv1.Error_Code) string {
	switch c {
	case agentv1.Error_CODE_UNKNOWN_AGENT:
		return "unknown_agent"
	case agentv1.Error_CODE_KEY_INVALID:
		return "key_invalid"
	case agentv1.Error_CODE_KEY_EXPIRED:
		return "key_expired"
	case agentv1.Error_CODE_BAD_FRAME:
		return "bad_frame"
	case agentv1.Error_CODE_FRAME_TOO_LARGE:
		return "frame_too_large"
	case agentv1.Error_CODE_UNAVAILABLE:
		return "unavailable"
	case agentv1.Error_CODE_INTERNAL:
		return "internal"
	default:
		return "protocol"
	}
}
