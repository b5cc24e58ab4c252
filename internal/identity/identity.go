// Package identity holds the Ed25519 identities of agents, relays and the
// cloud: a key made once and kept on disk, a self-signed certificate for TLS,
// and the SHA-256 fingerprint peers pin instead of trusting a CA.
package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/atomicfile"
)

// ErrPinMismatch means the peer's key is not the one pinned: a wrong host or
// a TLS-inspecting middlebox.
var ErrPinMismatch = errors.New("peer certificate does not match pinned fingerprint")

const keyFile = "key.pem"

// Identity is a long-lived Ed25519 key pair.
type Identity struct {
	Private ed25519.PrivateKey
	Public  ed25519.PublicKey
}

// LoadOrCreate reads dir/key.pem, creating a new key (mode 0600) on first use.
func LoadOrCreate(dir string) (*Identity, error) {
	path := filepath.Join(dir, keyFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		return parseKey(path, b)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("read identity %s: %w", path, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create identity dir %s: %w", dir, err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate identity: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode identity: %w", err)
	}
	if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("write identity %s: %w", path, err)
	}
	return &Identity{Private: priv, Public: pub}, nil
}

func parseKey(path string, b []byte) (*Identity, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("identity %s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("identity %s: %T is not an Ed25519 key", path, k)
	}
	return &Identity{Private: priv, Public: priv.Public().(ed25519.PublicKey)}, nil
}

// AgentID is the hex SHA-256 of an Ed25519 public key: what the agent calls
// itself and what the relay derives from its client certificate.
func AgentID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

// ID is AgentID of this identity's public key.
func (id *Identity) ID() string { return AgentID(id.Public) }

// Certificate makes a self-signed TLS certificate for this key, valid for the
// given host names and IP addresses. It is made fresh at every start: the key,
// not the certificate, is what peers pin.
func (id *Identity) Certificate(commonName string, hosts []string) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, id.Public, id.Private)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-sign certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: id.Private, Leaf: leaf}, nil
}

// CertificatePEM encodes a certificate's leaf as PEM, for peers that want a
// CA file rather than a fingerprint.
func CertificatePEM(c tls.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
}

// Fingerprint is the hex SHA-256 of a certificate's SubjectPublicKeyInfo, so
// it survives re-issuing the certificate for the same key.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// Fingerprint of this identity's public key, as peers will compute it.
func (id *Identity) Fingerprint() string {
	der, err := x509.MarshalPKIXPublicKey(id.Public)
	if err != nil {
		panic(err) // cannot fail for a valid Ed25519 key
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// NormalizeFingerprint accepts hex with or without colons and a "sha256:"
// prefix, in any case, and returns lower-case hex or an error.
func NormalizeFingerprint(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "sha256:")
	s = strings.ReplaceAll(s, ":", "")
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("fingerprint %q: want 64 hex digits of SHA-256", s)
	}
	return s, nil
}

// VerifyPinned returns a tls.Config VerifyPeerCertificate callback that
// accepts the peer only if its leaf key has one of the pinned fingerprints.
// Use it with InsecureSkipVerify: the pin replaces CA validation.
func VerifyPinned(pins ...string) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("peer sent no certificate")
		}
		cert, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
		got := Fingerprint(cert)
		for _, p := range pins {
			if p == got {
				return nil
			}
		}
		return fmt.Errorf("%w: got sha256:%s", ErrPinMismatch, got)
	}
}

// PeerEd25519 returns the Ed25519 public key of a verified TLS peer's leaf.
func PeerEd25519(cs tls.ConnectionState) (ed25519.PublicKey, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, errors.New("no client certificate")
	}
	pub, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("client key is %T, want Ed25519", cs.PeerCertificates[0].PublicKey)
	}
	return pub, nil
}

// StoredCertificate returns the PEM certificate at path when it was made for
// this key, still covers every host and is not within a year of expiry;
// otherwise it makes a new one and stores it there. Peers that trust the
// certificate itself (a CA file) rather than a key pin keep working across
// restarts.
func (id *Identity) StoredCertificate(path, commonName string, hosts []string) (tls.Certificate, error) {
	if b, err := os.ReadFile(path); err == nil {
		if c, ok := id.reusable(b, hosts); ok {
			return c, nil
		}
	}
	c, err := id.Certificate(commonName, hosts)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return tls.Certificate{}, fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	if err := atomicfile.Write(path, CertificatePEM(c), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return c, nil
}

func (id *Identity) reusable(pemBytes []byte, hosts []string) (tls.Certificate, bool) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return tls.Certificate{}, false
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || Fingerprint(leaf) != id.Fingerprint() || time.Until(leaf.NotAfter) < 365*24*time.Hour {
		return tls.Certificate{}, false
	}
	for _, h := range hosts {
		if h != "" && leaf.VerifyHostname(h) != nil {
			return tls.Certificate{}, false
		}
	}
	return tls.Certificate{Certificate: [][]byte{blk.Bytes}, PrivateKey: id.Private, Leaf: leaf}, true
}
