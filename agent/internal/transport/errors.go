package transport

import (
	"errors"
	"fmt"

	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	"github.com/quic-go/quic-go"
)

// RelayError is an Error frame or an application close code from the relay.
type RelayError struct {
	Code    agentv1.Error_Code
	Message string
}

func (e *RelayError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "(no message)"
	}
	switch e.Code {
	case agentv1.Error_CODE_KEY_INVALID:
		return "relay refused registration: key invalid: " + msg
	case agentv1.Error_CODE_KEY_EXPIRED:
		return "relay refused registration: key expired: " + msg
	case agentv1.Error_CODE_UNKNOWN_AGENT:
		return "relay does not know this agent: " + msg
	}
	return fmt.Sprintf("relay error %s: %s", e.Code, msg)
}

// KeyError reports whether the error needs an operator (a new key): the
// agent then retries slowly.
func KeyError(err error) bool {
	var re *RelayError
	if !errors.As(err, &re) {
		return false
	}
	switch re.Code {
	case agentv1.Error_CODE_KEY_INVALID, agentv1.Error_CODE_KEY_EXPIRED, agentv1.Error_CODE_UNKNOWN_AGENT:
		return true
	}
	return false
}

// unknownAgent reports whether the relay refused the agent as unknown (it
// was never registered there, or the relay lost its registry).
func unknownAgent(err error) bool {
	var re *RelayError
	return errors.As(err, &re) && re.Code == agentv1.Error_CODE_UNKNOWN_AGENT
}

// fromClose turns a QUIC application close by the relay into a RelayError.
func fromClose(err error) error {
	var ae *quic.ApplicationError
	if !errors.As(err, &ae) || !ae.Remote {
		return err
	}
	code := agentv1.Error_CODE_UNSPECIFIED
	switch ae.ErrorCode {
	case framing.CloseNormal:
		return fmt.Errorf("relay closed the connection: %w", err)
	case framing.CloseProtocol:
		code = agentv1.Error_CODE_PROTOCOL
	case framing.CloseUnknownAgent:
		code = agentv1.Error_CODE_UNKNOWN_AGENT
	case framing.CloseKeyInvalid:
		code = agentv1.Error_CODE_KEY_INVALID
	case framing.CloseKeyExpired:
		code = agentv1.Error_CODE_KEY_EXPIRED
	case framing.CloseUnavailable:
		code = agentv1.Error_CODE_UNAVAILABLE
	}
	return &RelayError{Code: code, Message: ae.ErrorMessage}
}

var (
	// ErrPinMismatch: the relay's key is not the pinned one (a
	// TLS-inspecting proxy, or the wrong relay).
	ErrPinMismatch = errors.New("relay identity does not match the pinned fingerprint")
	// ErrProxyAuth: the proxy answered 407.
	ErrProxyAuth = errors.New("proxy authentication failed")
	// ErrProxyRefused: the proxy answered CONNECT with another non-200.
	ErrProxyRefused = errors.New("proxy refused CONNECT")
	// ErrProxyUnreachable: no TCP connection to the proxy.
	ErrProxyUnreachable = errors.New("proxy unreachable")
)
