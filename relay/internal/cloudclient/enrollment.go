package cloudclient

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/internal/atomicfile"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

// EnrollmentFile is the name of the stored EnrollResponse in the data dir.
const EnrollmentFile = "enrollment.pb"

// LoadEnrollment reads <dataDir>/enrollment.pb; (nil, nil) when absent.
func LoadEnrollment(dataDir string) (*cloudv1.EnrollResponse, error) {
	path := filepath.Join(dataDir, EnrollmentFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read enrollment %s: %w", path, err)
	}
	e := &cloudv1.EnrollResponse{}
	if err := proto.Unmarshal(b, e); err != nil {
		return nil, fmt.Errorf("decode enrollment %s: %w", path, err)
	}
	if e.RelayId == "" || e.RelaySecret == "" {
		return nil, fmt.Errorf("enrollment %s: missing relay id or secret", path)
	}
	return e, nil
}

// EnsureEnrolled loads the stored enrollment or, when there is none,
// enrolls with token, proving the relay's key, and stores the answer
// durably (mode 0600, file and directory synced) before it uses it: a
// relay that stops after the cloud answered but before the answer is on
// disk enrolls again with the same token and key, which the cloud
// accepts. enrolled reports a new enrollment (false: loaded from disk).
func (c *Client) EnsureEnrolled(ctx context.Context, dataDir, token string, key ed25519.PrivateKey, req *cloudv1.EnrollRequest) (e *cloudv1.EnrollResponse, enrolled bool, err error) {
	e, err = LoadEnrollment(dataDir)
	if err != nil || e != nil {
		if e != nil {
			c.SetCredentials(e.RelayId, e.RelaySecret)
		}
		return e, false, err
	}
	if token == "" {
		return nil, false, fmt.Errorf("relay not enrolled and cloud.enrollment_token is empty")
	}
	req.EnrollmentToken = token
	if key != nil {
		cloudv1.SignEnrollment(req, key)
	}
	e, err = c.Enroll(ctx, req)
	if err != nil {
		return nil, false, err
	}
	b, err := proto.Marshal(e)
	if err != nil {
		return nil, false, err
	}
	path := filepath.Join(dataDir, EnrollmentFile)
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return nil, false, fmt.Errorf("store enrollment: %w", err)
	}
	c.SetCredentials(e.RelayId, e.RelaySecret)
	return e, true, nil
}
