package cluster

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/atomicfile"
	"github.com/gatehouse/gatehouse/internal/identity"
)

// Files under Config.DataDir.
const (
	caCertFile    = "tls/ca.pem"
	caKeyFile     = "tls/ca.key"
	nodeCertFile  = "tls/node.pem"
	tokenFile     = "tls/join-token"
	identityDir   = "identity"
	bootstrapFile = "bootstrap"
	joinFile      = "join-addr"
	// soloFile marks a cluster of one made by the relay itself at its first
	// start (InitSolo): its cluster port stays on loopback, and `cluster
	// init` or `join` may turn it into a site cluster.
	soloFile = "solo"
)

const (
	tokenPrefix  = "gh1"
	caValidity   = 20 * 365 * 24 * time.Hour
	nodeValidity = 10 * 365 * 24 * time.Hour
)

// pki is a node's view of the site CA.
type pki struct {
	caCert *x509.Certificate
	caKey  ed25519.PrivateKey // nil on a node that has not got it
	node   tls.Certificate    // leaf + CA chain
	pool   *x509.CertPool
	token  string
}

// JoinToken is the parsed form of the token printed by `cluster init`:
// "gh1.<sha256 of the CA's SubjectPublicKeyInfo, hex>.<secret, hex>". The
// fingerprint lets the joining node authenticate the cluster; the secret
// lets the cluster authenticate the joining node.
type JoinToken struct {
	CAFingerprint string
	Secret        string
}

// ParseJoinToken parses a join token.
func ParseJoinToken(s string) (JoinToken, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 3 || parts[0] != tokenPrefix || len(parts[1]) != 64 || len(parts[2]) != 64 {
		return JoinToken{}, fmt.Errorf("parse join token: want %s.<64 hex>.<64 hex>", tokenPrefix)
	}
	for _, p := range parts[1:] {
		if _, err := hex.DecodeString(p); err != nil {
			return JoinToken{}, fmt.Errorf("parse join token: %w", err)
		}
	}
	return JoinToken{CAFingerprint: parts[1], Secret: parts[2]}, nil
}

func (t JoinToken) String() string {
	return tokenPrefix + "." + t.CAFingerprint + "." + t.Secret
}

func (p *pki) checkSecret(secret string) bool {
	t, err := ParseJoinToken(p.token)
	if err != nil {
		return false
	}
	a, b := sha256.Sum256([]byte(secret)), sha256.Sum256([]byte(t.Secret))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// Init makes a new site: a CA (Ed25519), this node's certificate, a join
// token, and a marker telling Run to bootstrap a single-node cluster. It
// returns the join token. On a cluster of one made by InitSolo it keeps the
// state and opens the cluster port to other relays at the next start; it
// refuses a data dir that already belongs to a site cluster.
func Init(dataDir, nodeID string) (string, error) {
	if _, err := os.Stat(filepath.Join(dataDir, caCertFile)); err == nil {
		if !Solo(dataDir) {
			return "", fmt.Errorf("cluster init %s: already initialized (`gatehouse-relay cluster status` on a member prints the join token)", dataDir)
		}
		p, err := loadPKI(dataDir)
		if err != nil {
			return "", err
		}
		if err := os.Remove(filepath.Join(dataDir, soloFile)); err != nil {
			return "", fmt.Errorf("cluster init: %w", err)
		}
		return p.token, nil
	}
	return initSite(dataDir, nodeID)
}

// InitSolo makes a cluster of one for a relay started without `cluster
// init` or `join`, so that a lone relay serves from replicated state like a
// member of a site cluster does.
func InitSolo(dataDir, nodeID string) error {
	if _, err := initSite(dataDir, nodeID); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dataDir, soloFile), []byte(nodeID+"\n"), 0o600); err != nil {
		return fmt.Errorf("cluster of one: %w", err)
	}
	return nil
}

// Solo reports whether dataDir holds a cluster of one made by InitSolo.
func Solo(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, soloFile))
	return err == nil
}

func initSite(dataDir, nodeID string) (string, error) {
	id, err := identity.LoadOrCreate(filepath.Join(dataDir, identityDir))
	if err != nil {
		return "", err
	}
	caPub, caKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate site CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "gatehouse site CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caPub, caKey)
	if err != nil {
		return "", fmt.Errorf("create site CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", fmt.Errorf("parse site CA: %w", err)
	}
	nodeDER, err := signNode(caCert, caKey, nodeID, id.Public)
	if err != nil {
		return "", err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", fmt.Errorf("make join token: %w", err)
	}
	token := JoinToken{CAFingerprint: identity.Fingerprint(caCert), Secret: hex.EncodeToString(secret)}.String()
	keyDER, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		return "", fmt.Errorf("encode site CA key: %w", err)
	}
	if err := writeCredentials(dataDir, caDER, keyDER, nodeDER, token); err != nil {
		return "", err
	}
	if err := atomicfile.Write(filepath.Join(dataDir, bootstrapFile), []byte(nodeID+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("cluster init: %w", err)
	}
	return token, nil
}

func writeCredentials(dataDir string, caDER, caKeyDER, nodeDER []byte, token string) error {
	if err := os.MkdirAll(filepath.Join(dataDir, "tls"), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dataDir, err)
	}
	files := []struct {
		name string
		b    []byte
		perm os.FileMode
	}{
		{caKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: caKeyDER}), 0o600},
		{tokenFile, []byte(token + "\n"), 0o600},
		{nodeCertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: nodeDER}), 0o644},
		// The CA certificate last: its presence marks the data dir as initialized.
		{caCertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644},
	}
	for _, f := range files {
		if err := atomicfile.Write(filepath.Join(dataDir, f.name), f.b, f.perm); err != nil {
			return fmt.Errorf("write cluster credentials: %w", err)
		}
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

// signNode issues a node certificate for pub, valid for client and server auth.
func signNode(ca *x509.Certificate, caKey ed25519.PrivateKey, nodeID string, pub ed25519.PublicKey) ([]byte, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: nodeID, OrganizationalUnit: []string{"gatehouse relay"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(nodeValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		return nil, fmt.Errorf("sign node certificate for %s: %w", nodeID, err)
	}
	return der, nil
}

// loadPKI reads the node's credentials; ErrNotInitialized when absent.
func loadPKI(dataDir string) (*pki, error) {
	caPEM, err := os.ReadFile(filepath.Join(dataDir, caCertFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotInitialized
	}
	if err != nil {
		return nil, fmt.Errorf("read site CA: %w", err)
	}
	caCert, err := parseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("site CA %s: %w", caCertFile, err)
	}
	nodePEM, err := os.ReadFile(filepath.Join(dataDir, nodeCertFile))
	if err != nil {
		return nil, fmt.Errorf("read node certificate: %w", err)
	}
	nodeCert, err := parseCertPEM(nodePEM)
	if err != nil {
		return nil, fmt.Errorf("node certificate %s: %w", nodeCertFile, err)
	}
	id, err := identity.LoadOrCreate(filepath.Join(dataDir, identityDir))
	if err != nil {
		return nil, err
	}
	if pub, ok := nodeCert.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(id.Public) {
		return nil, fmt.Errorf("node certificate %s does not match the node key", nodeCertFile)
	}
	p := &pki{caCert: caCert, pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	p.node = tls.Certificate{Certificate: [][]byte{nodeCert.Raw, caCert.Raw}, PrivateKey: id.Private, Leaf: nodeCert}
	if b, err := os.ReadFile(filepath.Join(dataDir, caKeyFile)); err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("site CA key %s: no PEM block", caKeyFile)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("site CA key %s: %w", caKeyFile, err)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("site CA key %s: not Ed25519", caKeyFile)
		}
		p.caKey = ek
	}
	if b, err := os.ReadFile(filepath.Join(dataDir, tokenFile)); err == nil {
		p.token = strings.TrimSpace(string(b))
	}
	return p, nil
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// verifyChain checks that leaf is a node certificate issued by the site CA.
func (p *pki) verifyChain(leaf *x509.Certificate) error {
	_, err := leaf.Verify(x509.VerifyOptions{Roots: p.pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("peer certificate %q: %w: %w", leaf.Subject.CommonName, ErrUnauthorized, err)
	}
	return nil
}

// serverTLS accepts any client; the cluster port then requires a CA-signed
// client certificate for everything but a join (see transport.go).
func (p *pki) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{p.node},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    p.pool,
	}
}

// clientTLS presents the node certificate and accepts only CA-signed peers
// (node names are not checked: any site node may answer any address).
func (p *pki) clientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{p.node},
		InsecureSkipVerify: true, // replaced by VerifyPeerCertificate against the site CA
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return fmt.Errorf("peer sent no certificate: %w", ErrUnauthorized)
			}
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return fmt.Errorf("peer certificate: %w", err)
			}
			return p.verifyChain(leaf)
		},
	}
}

// joinTLS is the client config of a node that has no certificate yet: it
// trusts the server when its chain ends in a CA whose key matches the token.
func joinTLS(tok JoinToken) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by the CA fingerprint check below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) < 2 {
				return fmt.Errorf("cluster node sent no CA certificate: %w", ErrUnauthorized)
			}
			ca, err := x509.ParseCertificate(raw[len(raw)-1])
			if err != nil {
				return fmt.Errorf("cluster CA certificate: %w", err)
			}
			if identity.Fingerprint(ca) != tok.CAFingerprint {
				return fmt.Errorf("cluster CA does not match the join token: %w", ErrUnauthorized)
			}
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return fmt.Errorf("cluster node certificate: %w", err)
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			return err
		},
	}
}
