// Package testkit holds what tests across the module share: waiting for a
// condition, a logger that is quiet unless asked, and loopback TLS
// identities. It is imported by _test.go files only.
package testkit

import (
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/identity"
)

// Patience is how long WaitFor waits: generous, because CI is a shared
// 2-core machine where a Raft election or a QUIC handshake can take seconds.
const Patience = 20 * time.Second

// WaitFor polls cond until it holds, failing the test after Patience.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitWithin(t, Patience, what, cond)
}

// WaitWithin is WaitFor with its own limit.
func WaitWithin(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Logger discards everything unless GATEHOUSE_TEST_LOG is set, then logs at
// debug level to stderr (go test -v shows it beside the test's output).
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("GATEHOUSE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// Identity is a fresh Ed25519 identity kept in the test's temporary directory.
func Identity(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.LoadOrCreate(filepath.Join(t.TempDir(), "identity"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// ClientTLS is the TLS configuration of a client with a fresh identity
// (commonName, e.g. "agent") that speaks alpn and accepts only a server whose
// key has one of pins; with no pins it accepts any server.
func ClientTLS(t testing.TB, commonName, alpn string, pins ...string) (*tls.Config, *identity.Identity) {
	t.Helper()
	id := Identity(t)
	cert, err := id.Certificate(commonName, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	if alpn != "" {
		c.NextProtos = []string{alpn}
	}
	if len(pins) > 0 {
		c.VerifyPeerCertificate = identity.VerifyPinned(pins...)
	}
	return c, id
}

// ServerTLS is the TLS configuration of a loopback server (127.0.0.1, ::1,
// localhost) with a fresh identity; clients pin the returned identity's
// fingerprint.
func ServerTLS(t testing.TB, alpn string) (*tls.Config, *identity.Identity) {
	t.Helper()
	id := Identity(t)
	cert, err := id.Certificate("gatehouse-test", []string{"127.0.0.1", "::1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	if alpn != "" {
		c.NextProtos = []string{alpn}
	}
	return c, id
}
