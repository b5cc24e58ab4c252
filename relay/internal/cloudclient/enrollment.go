package cloudclient

import (
	"context"
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

// EnsureEnrolled loads the stored enrollment or, when there is none, enrolls with
// token and stores the answer (mode 0600) before returning it.
func (c *Client) EnsureEnrolled(ctx context.Context, dataDir, token string, req *cloudv1.EnrollRequest) (*cloudv1.EnrollResponse, error) {
	e, err := LoadEnrollment(dataDir)
	if err != nil || e != nil {
		if e != nil {
			c.SetCredentials(e.RelayId, e.RelaySecret)
		}
		return e, err
	}
	if token == "" {
		return nil, fmt.Errorf("relay not enrolled and cloud.enrollment_token is empty")
	}
	req.EnrollmentToken = token
	e, err = c.Enroll(ctx, req)
	if err != nil {
		return nil, err
	}
	b, err := proto.Marshal(e)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, EnrollmentFile)
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("store enrollment: %w", err)
	}
	c.SetCredentials(e.RelayId, e.RelaySecret)
	return e, nil
}
