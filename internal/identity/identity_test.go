package identity

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"testing"
)

func TestLoadOrCreateIsStable(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID() != b.ID() {
		t.Fatalf("got id %s after reload, want %s", b.ID(), a.ID())
	}
	if len(a.ID()) != 64 {
		t.Fatalf("got id length %d, want 64 hex digits", len(a.ID()))
	}
}

func TestNormalizeFingerprint(t *testing.T) {
	good := "ab" + "00112233445566778899aabbccddeeff00112233445566778899aabbccddee"
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{good, good, true},
		{"SHA256:" + "AB:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE", good, true},
		{"abc", "", false},
		{"zz" + good[2:], "", false},
	} {
		got, err := NormalizeFingerprint(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("NormalizeFingerprint(%q) = %q, %v; want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// A real TLS 1.3 handshake: the pin accepts the right key and refuses another,
// and the server derives the client's agent id from its certificate.
func TestPinnedHandshake(t *testing.T) {
	server, _ := LoadOrCreate(t.TempDir())
	client, _ := LoadOrCreate(t.TempDir())
	other, _ := LoadOrCreate(t.TempDir())
	scert, err := server.Certificate("relay", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ccert, _ := client.Certificate("agent", nil)
	if got, want := Fingerprint(scert.Leaf), server.Fingerprint(); got != want {
		t.Fatalf("certificate fingerprint %s, key fingerprint %s", got, want)
	}

	for _, tc := range []struct {
		name    string
		pin     string
		wantErr error
	}{
		{"right pin", server.Fingerprint(), nil},
		{"wrong pin", other.Fingerprint(), ErrPinMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
				Certificates: []tls.Certificate{scert},
				ClientAuth:   tls.RequireAnyClientCert,
				MinVersion:   tls.VersionTLS13,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			gotID := make(chan string, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					gotID <- ""
					return
				}
				defer c.Close()
				tc := c.(*tls.Conn)
				if err := tc.HandshakeContext(context.Background()); err != nil {
					gotID <- ""
					return
				}
				pub, err := PeerEd25519(tc.ConnectionState())
				if err != nil {
					gotID <- ""
					return
				}
				gotID <- AgentID(pub)
			}()
			conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
				InsecureSkipVerify:    true,
				VerifyPeerCertificate: VerifyPinned(tc.pin),
				Certificates:          []tls.Certificate{ccert},
				MinVersion:            tls.VersionTLS13,
			})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if id := <-gotID; id != client.ID() {
				t.Fatalf("server derived agent id %q, want %q", id, client.ID())
			}
		})
	}
}

func TestStoredCertificateIsReused(t *testing.T) {
	dir := t.TempDir()
	id, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := dir + "/tls/cert.pem"
	first, err := id.StoredCertificate(path, "cloud", []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := id.StoredCertificate(path, "cloud", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Certificate[0], again.Certificate[0]) {
		t.Fatal("certificate re-made although the stored one still fits")
	}
	wider, err := id.StoredCertificate(path, "cloud", []string{"127.0.0.1", "cloud.example"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(first.Certificate[0], wider.Certificate[0]) {
		t.Fatal("stored certificate reused although it lacks a host")
	}
	other, _ := LoadOrCreate(t.TempDir())
	forOther, err := other.StoredCertificate(path, "cloud", []string{"127.0.0.1", "cloud.example"})
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(forOther.Leaf) != other.Fingerprint() {
		t.Fatal("certificate of another key reused")
	}
}
