package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/internal/atomicfile"
	"github.com/gatehouse/gatehouse/internal/identity"
	clusterv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cluster/v1"
)

// maxRPCSize bounds one cluster RPC message.
const maxRPCSize = 8 << 20

const rpcTimeout = 30 * time.Second

// rpcError is an error answered by the remote node.
type rpcError struct {
	code clusterv1.RpcCode
	msg  string
}

func (e *rpcError) Error() string { return e.msg }

func (e *rpcError) Unwrap() error {
	switch e.code {
	case clusterv1.RpcCode_RPC_CODE_NO_QUORUM:
		return ErrNoQuorum
	case clusterv1.RpcCode_RPC_CODE_UNAUTHORIZED:
		return ErrUnauthorized
	}
	return nil
}

// readRPC decodes one length-delimited message from r; it never reads past maxRPCSize.
func readRPC(r io.Reader, m proto.Message) error {
	return protodelim.UnmarshalOptions{MaxSize: maxRPCSize}.UnmarshalFrom(bufio.NewReader(r), m)
}

// decodeRequest is the network-facing decoder of the RPC server (fuzzed).
func decodeRequest(b []byte) (*clusterv1.RpcRequest, error) {
	req := &clusterv1.RpcRequest{}
	if err := readRPC(bytes.NewReader(b), req); err != nil {
		return nil, fmt.Errorf("decode cluster rpc: %w", err)
	}
	if req.Call == nil {
		return nil, errors.New("decode cluster rpc: empty call")
	}
	return req, nil
}

// callRPC sends one request on an established RPC connection and reads the answer.
func callRPC(ctx context.Context, c net.Conn, req *clusterv1.RpcRequest) (*clusterv1.RpcResponse, error) {
	defer c.Close()
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(rpcTimeout)
	}
	_ = c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := protodelim.MarshalTo(c, req); err != nil {
		return nil, fmt.Errorf("send cluster rpc: %w", err)
	}
	resp := &clusterv1.RpcResponse{}
	if err := readRPC(c, resp); err != nil {
		return nil, fmt.Errorf("read cluster rpc answer: %w", err)
	}
	if resp.Code != clusterv1.RpcCode_RPC_CODE_OK {
		return resp, &rpcError{code: resp.Code, msg: resp.Error}
	}
	return resp, nil
}

// handleRPC serves one request on an inbound RPC connection.
func (n *Node) handleRPC(c *tls.Conn, verified bool) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(rpcTimeout))
	req := &clusterv1.RpcRequest{}
	if err := readRPC(c, req); err != nil {
		n.metrics.rpcErrors.Inc()
		n.log.Debug("cluster rpc: bad request", "remote", c.RemoteAddr(), "err", err)
		_, _ = protodelim.MarshalTo(c, &clusterv1.RpcResponse{Code: clusterv1.RpcCode_RPC_CODE_BAD_REQUEST, Error: err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ApplyTimeout)
	defer cancel()
	resp := n.serveRPC(ctx, req, verified)
	if resp.Code != clusterv1.RpcCode_RPC_CODE_OK {
		n.metrics.rpcErrors.Inc()
	}
	_, _ = protodelim.MarshalTo(c, resp)
}

func (n *Node) serveRPC(ctx context.Context, req *clusterv1.RpcRequest, verified bool) *clusterv1.RpcResponse {
	if c, ok := req.Call.(*clusterv1.RpcRequest_Certify); ok {
		res, err := n.certify(c.Certify)
		if err != nil {
			n.log.Warn("cluster join refused", "node", c.Certify.GetNodeId(), "err", err)
			return errResponse(err)
		}
		n.log.Info("cluster join: certificate issued", "node", c.Certify.NodeId)
		return &clusterv1.RpcResponse{Certify: res}
	}
	if !verified {
		return &clusterv1.RpcResponse{Code: clusterv1.RpcCode_RPC_CODE_UNAUTHORIZED, Error: "a site certificate is required"}
	}
	var idx uint64
	var err error
	switch c := req.Call.(type) {
	case *clusterv1.RpcRequest_Apply:
		if c.Apply.CommandType > 255 {
			return &clusterv1.RpcResponse{Code: clusterv1.RpcCode_RPC_CODE_BAD_REQUEST, Error: "command type out of range"}
		}
		idx, err = n.applyLeader(append([]byte{byte(c.Apply.CommandType)}, c.Apply.Body...), n.cfg.ApplyTimeout)
	case *clusterv1.RpcRequest_AddVoter:
		err = n.addVoterLeader(c.AddVoter.NodeId, c.AddVoter.RaftAddr)
	case *clusterv1.RpcRequest_RemoveServer:
		err = n.removeLeader(ctx, c.RemoveServer.NodeId)
	case *clusterv1.RpcRequest_Barrier:
		idx, err = n.barrierLeader()
	default:
		return &clusterv1.RpcResponse{Code: clusterv1.RpcCode_RPC_CODE_BAD_REQUEST, Error: "unknown call"}
	}
	if err != nil {
		return errResponse(err)
	}
	return &clusterv1.RpcResponse{Index: idx}
}

func errResponse(err error) *clusterv1.RpcResponse {
	code := clusterv1.RpcCode_RPC_CODE_ERROR
	switch {
	case errors.Is(err, errNotLeader):
		code = clusterv1.RpcCode_RPC_CODE_NOT_LEADER
	case errors.Is(err, ErrNoQuorum):
		code = clusterv1.RpcCode_RPC_CODE_NO_QUORUM
	case errors.Is(err, ErrUnauthorized):
		code = clusterv1.RpcCode_RPC_CODE_UNAUTHORIZED
	}
	return &clusterv1.RpcResponse{Code: code, Error: err.Error()}
}

// certify issues a node certificate to a holder of the join token.
func (n *Node) certify(c *clusterv1.CertifyCall) (*clusterv1.CertifyResult, error) {
	if n.pki.caKey == nil {
		return nil, errors.New("this node holds no site CA key: join through another node")
	}
	if !n.pki.checkSecret(c.TokenSecret) {
		return nil, fmt.Errorf("join token: %w", ErrUnauthorized)
	}
	if c.NodeId == "" || len(c.PublicKey) != ed25519.PublicKeySize {
		return nil, errors.New("join: node_id and a 32-byte Ed25519 public key are required")
	}
	der, err := signNode(n.pki.caCert, n.pki.caKey, c.NodeId, ed25519.PublicKey(c.PublicKey))
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(n.pki.caKey)
	if err != nil {
		return nil, fmt.Errorf("encode site CA key: %w", err)
	}
	return &clusterv1.CertifyResult{NodeCertDer: der, CaCertDer: n.pki.caCert.Raw, CaKeyDer: keyDER, Token: n.pki.token}, nil
}

// Enroll is the first half of `cluster join ADDR`: with the join token it
// obtains a node certificate from the member at addr (authenticated by the
// CA fingerprint in the token) and stores it in dataDir, with a marker that
// makes the next Run ask the leader to add this node as a voter.
func Enroll(ctx context.Context, dataDir, nodeID, addr, token string) error {
	tok, err := ParseJoinToken(token)
	if err != nil {
		return err
	}
	solo := Solo(dataDir)
	if _, err := os.Stat(filepath.Join(dataDir, caCertFile)); err == nil && !solo {
		return fmt.Errorf("cluster join %s: data dir %s already belongs to a cluster", addr, dataDir)
	}
	id, err := identity.LoadOrCreate(filepath.Join(dataDir, identityDir))
	if err != nil {
		return err
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("cluster join %s: %w", addr, err)
	}
	c, err := clientHandshake(ctx, raw, addr, connRPC, joinTLS(tok))
	if err != nil {
		raw.Close()
		return fmt.Errorf("cluster join: %w", err)
	}
	resp, err := callRPC(ctx, c, &clusterv1.RpcRequest{Call: &clusterv1.RpcRequest_Certify{Certify: &clusterv1.CertifyCall{
		TokenSecret: tok.Secret, NodeId: nodeID, PublicKey: id.Public,
	}}})
	if err != nil {
		return fmt.Errorf("cluster join %s: %w", addr, err)
	}
	res := resp.GetCertify()
	if res == nil {
		return fmt.Errorf("cluster join %s: answer without certificate", addr)
	}
	ca, err := x509.ParseCertificate(res.CaCertDer)
	if err != nil || identity.Fingerprint(ca) != tok.CAFingerprint {
		return fmt.Errorf("cluster join %s: CA in the answer does not match the token: %w", addr, ErrUnauthorized)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("cluster join: %w", err)
	}
	if solo {
		if err := setSoloAside(dataDir); err != nil {
			return fmt.Errorf("cluster join: %w", err)
		}
	}
	if err := atomicfile.Write(filepath.Join(dataDir, joinFile), []byte(addr+"\n"), 0o600); err != nil {
		return fmt.Errorf("cluster join: %w", err)
	}
	return writeCredentials(dataDir, res.CaCertDer, res.CaKeyDer, res.NodeCertDer, res.Token)
}

// setSoloAside moves a cluster of one's state out of the way of the site
// cluster being joined (the node key stays: the site CA has just certified
// it). What it held (agents registered through this relay) the joined
// cluster learns again: agents register again by themselves.
func setSoloAside(dataDir string) error {
	aside := filepath.Join(dataDir, fmt.Sprintf("solo-before-join-%d", time.Now().Unix()))
	if err := os.MkdirAll(aside, 0o700); err != nil {
		return err
	}
	for _, name := range []string{"raft", "tls", bootstrapFile, soloFile} {
		err := os.Rename(filepath.Join(dataDir, name), filepath.Join(aside, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
