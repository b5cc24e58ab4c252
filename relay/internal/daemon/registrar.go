package daemon

import (
	"context"
	"errors"

	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

var errNotEnrolled = errors.New("relay not enrolled yet")

// enrolledRegistrar calls the cloud only once the relay has credentials;
// before that it reports the cloud unreachable, so ingress registers offline.
type enrolledRegistrar struct{ d *Daemon }

func (r enrolledRegistrar) Register(ctx context.Context, req *cloudv1.RegisterAgentRequest) (*cloudv1.RegisterAgentResponse, error) {
	if r.d.up.Enrollment() == nil {
		return nil, errNotEnrolled
	}
	return r.d.client.Register(ctx, req)
}
