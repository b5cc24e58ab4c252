package framing

import (
	"io"
	"time"
)

// Stream is one bidirectional stream between agent and relay: a QUIC stream
// or a yamux stream over TLS/TCP. Both sides program against it so either
// transport carries the same frames.
type Stream interface {
	io.ReadWriteCloser
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
}
