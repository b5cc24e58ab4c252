package harness

import (
	"fmt"
	"os"
	"path/filepath"
)

// SetEnrollmentToken rewrites cloud.enrollment_token in the relay's config,
// as an operator does with a fresh token; it takes effect at the next start.
func (r *Relay) SetEnrollmentToken(token string) error {
	r.conf["cloud"].(map[string]any)["enrollment_token"] = token
	return writeYAML(r.Config, r.conf)
}

// LoseDataDir deletes the stopped relay's whole data directory (spool, agent
// registry, enrollment), as a dead disk does. With keepIdentity the relay's
// key comes back as an operator restores it from a backup: agents pin it.
func (r *Relay) LoseDataDir(keepIdentity bool) error {
	if r.Running() {
		return fmt.Errorf("%s: still running", r.Name)
	}
	var key []byte
	keyPath := filepath.Join(r.DataDir, "identity", "key.pem")
	if keepIdentity {
		var err error
		if key, err = os.ReadFile(keyPath); err != nil {
			return fmt.Errorf("back up relay key: %w", err)
		}
	}
	if err := os.RemoveAll(r.DataDir); err != nil {
		return err
	}
	if !keepIdentity {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(keyPath), 0o700); err != nil {
		return err
	}
	return os.WriteFile(keyPath, key, 0o600)
}

// EnrollmentTokenInConfig is the cloud.enrollment_token the relay's config holds.
func (r *Relay) EnrollmentTokenInConfig() string {
	tok, _ := r.conf["cloud"].(map[string]any)["enrollment_token"].(string)
	return tok
}
