// Package enrollment holds who the relay is towards the cloud: its relay
// id, tenant and site, from enrollment.pb or from enrolling (the uplink's
// first step). Ingress, site state and status read it; nothing else keeps a
// copy.
package enrollment

import (
	"sync"
	"sync/atomic"

	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/cloudclient"
)

// State is the relay's enrollment, empty until it has one.
type State struct {
	cur  atomic.Pointer[cloudv1.EnrollResponse]
	once sync.Once
	done chan struct{}
}

// New returns a state not enrolled yet.
func New() *State { return &State{done: make(chan struct{})} }

// Load returns the state of dataDir: enrolled when enrollment.pb is there.
func Load(dataDir string) (*State, error) {
	s := New()
	e, err := cloudclient.LoadEnrollment(dataDir)
	if err != nil {
		return nil, err
	}
	if e != nil {
		s.Set(e)
	}
	return s, nil
}

// Set records the enrollment (the relay enrolls once; later calls only
// replace the record).
func (s *State) Set(e *cloudv1.EnrollResponse) {
	s.cur.Store(e)
	s.once.Do(func() { close(s.done) })
}

// Current is the enrollment, or nil before there is one.
func (s *State) Current() *cloudv1.EnrollResponse { return s.cur.Load() }

// Done is closed once the relay is enrolled.
func (s *State) Done() <-chan struct{} { return s.done }

// RelayID is the relay's id at the cloud, "" before enrollment.
func (s *State) RelayID() string { return s.Current().GetRelayId() }

// TenantID is the relay's tenant, "" before enrollment.
func (s *State) TenantID() string { return s.Current().GetTenantId() }

// SiteID is the relay's site, "" before enrollment.
func (s *State) SiteID() string { return s.Current().GetSiteId() }
