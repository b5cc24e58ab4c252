package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/gatehouse/gatehouse/internal/identity"
	clusterv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cluster/v1"
)

// rawCall dials addr with cfg, sends kind and req, and returns the answer or an error.
func rawCall(t *testing.T, addr string, cfg *tls.Config, kind byte, req *clusterv1.RpcRequest) (*clusterv1.RpcResponse, error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := c.Write([]byte{kind}); err != nil {
		return nil, err
	}
	if _, err := protodelim.MarshalTo(c, req); err != nil {
		return nil, err
	}
	resp := &clusterv1.RpcResponse{}
	if err := readRPC(c, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// refused: the connection was closed, or the call was answered UNAUTHORIZED
// (Go's TLS client does not even send a certificate the server's CA list
// does not name, so the server sees no certificate).
func refused(resp *clusterv1.RpcResponse, err error) bool {
	return err != nil || resp.Code == clusterv1.RpcCode_RPC_CODE_UNAUTHORIZED
}

func TestMTLSRefusesForeignNodes(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	n1 := c.nodes[0]
	apply := &clusterv1.RpcRequest{Call: &clusterv1.RpcRequest_Apply{Apply: &clusterv1.ApplyCall{
		CommandType: uint32(CmdSetIsolation), Body: mustEncode(t, Command{Type: CmdSetIsolation, Body: &clusterv1.IsolationIntent{AgentId: "evil", Isolated: true}})[1:],
	}}}

	// A node of another site (its own CA) is refused at the TLS handshake.
	foreignDir := filepath.Join(t.TempDir(), "foreign")
	if _, err := Init(foreignDir, "x1"); err != nil {
		t.Fatal(err)
	}
	foreign, err := loadPKI(foreignDir)
	if err != nil {
		t.Fatal(err)
	}
	fcfg := foreign.clientTLS()
	fcfg.VerifyPeerCertificate = nil // the attacker trusts anything
	for _, kind := range []byte{connRaft, connRPC} {
		if resp, err := rawCall(t, n1.Addr(), fcfg, kind, apply); !refused(resp, err) {
			t.Errorf("foreign CA cert, conn type %d: got answer %v, want the connection refused", kind, resp)
		}
	}

	// A self-signed certificate is refused too.
	id, err := identity.LoadOrCreate(filepath.Join(t.TempDir(), "id"))
	if err != nil {
		t.Fatal(err)
	}
	self, err := id.Certificate("n9", nil)
	if err != nil {
		t.Fatal(err)
	}
	scfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{self}}
	if resp, err := rawCall(t, n1.Addr(), scfg, connRPC, apply); !refused(resp, err) {
		t.Errorf("self-signed cert: got answer %v, want the connection refused", resp)
	}

	// Without a client certificate only a join (Certify) is served.
	ncfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	resp, err := rawCall(t, n1.Addr(), ncfg, connRPC, apply)
	if err != nil || resp.Code != clusterv1.RpcCode_RPC_CODE_UNAUTHORIZED {
		t.Errorf("no client cert, apply: got %v, %v; want UNAUTHORIZED", resp, err)
	}
	if _, err := rawCall(t, n1.Addr(), ncfg, connRaft, apply); err == nil {
		t.Error("no client cert, raft conn: got an answer, want the connection closed")
	}
	if n1.Store().Isolation("evil").Isolated {
		t.Fatal("a refused peer changed the state")
	}
}

func TestEnrollRefusesBadTokens(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	n1 := c.nodes[0]
	good, err := ParseJoinToken(c.token)
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret := JoinToken{CAFingerprint: good.CAFingerprint, Secret: strings.Repeat("ab", 32)}
	wrongCA := JoinToken{CAFingerprint: strings.Repeat("cd", 32), Secret: good.Secret}
	tests := []struct {
		name, token string
	}{
		{"wrong secret", wrongSecret.String()},
		{"wrong CA fingerprint", wrongCA.String()},
		{"malformed", "gh1.nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "n2")
			err := Enroll(context.Background(), dir, "n2", n1.Addr(), tt.token)
			if err == nil {
				t.Fatal("got nil error, want the join refused")
			}
			if Initialized(dir) {
				t.Fatal("a refused join left credentials behind")
			}
		})
	}
	if err := Enroll(context.Background(), filepath.Join(t.TempDir(), "n2"), "n2", n1.Addr(), wrongSecret.String()); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong secret: got %v, want ErrUnauthorized", err)
	}
}
