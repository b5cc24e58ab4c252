package cloudv1

import (
	"crypto/ed25519"
	"errors"
)

// enrollProofContext keeps an enrollment signature from being valid as
// anything else the relay key signs.
const enrollProofContext = "gatehouse relay enrollment v1\x00"

// EnrollmentProof is what a relay signs with its identity key to enroll:
// it binds the token to the key, so only the holder of both can have the
// same enrollment answered again.
func EnrollmentProof(token string, relayPublicKey []byte) []byte {
	b := make([]byte, 0, len(enrollProofContext)+len(token)+1+len(relayPublicKey))
	b = append(b, enrollProofContext...)
	b = append(b, token...)
	b = append(b, 0)
	return append(b, relayPublicKey...)
}

// SignEnrollment sets the relay's public key and its proof on req (whose
// token must be set).
func SignEnrollment(req *EnrollRequest, priv ed25519.PrivateKey) {
	pub := priv.Public().(ed25519.PublicKey)
	req.RelayPublicKey = pub
	req.Signature = ed25519.Sign(priv, EnrollmentProof(req.GetEnrollmentToken(), pub))
}

// VerifyEnrollment checks the proof of a request that carries a relay key;
// it returns nil for a request without one (relays older than the proof).
func VerifyEnrollment(req *EnrollRequest) error {
	pub := req.GetRelayPublicKey()
	if len(pub) == 0 && len(req.GetSignature()) == 0 {
		return nil
	}
	if len(pub) != ed25519.PublicKeySize {
		return errors.New("relay_public_key is not an Ed25519 key")
	}
	if !ed25519.Verify(pub, EnrollmentProof(req.GetEnrollmentToken(), pub), req.GetSignature()) {
		return errors.New("signature does not match relay_public_key")
	}
	return nil
}
