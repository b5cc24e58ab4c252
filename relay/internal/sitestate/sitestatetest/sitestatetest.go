// Package sitestatetest runs a real site state for tests: a cluster of one
// (clustertest.Solo), as a relay alone has.
package sitestatetest

import (
	"testing"

	"github.com/gatehouse/gatehouse/cluster/clustertest"
	"github.com/gatehouse/gatehouse/internal/testkit"
	"github.com/gatehouse/gatehouse/relay/internal/sitestate"
)

// Tenant is a fixed sitestate.Identity.
type Tenant string

// TenantID returns t.
func (t Tenant) TenantID() string { return string(t) }

// New starts a cluster of one that leads, stopped when the test ends.
func New(t testing.TB, id sitestate.Identity) *sitestate.State {
	t.Helper()
	n := clustertest.Solo(t)
	return sitestate.New(clustertest.Config("", "").ApplyTimeout, sitestate.Deps{Node: n.Node, Identity: id, Logger: testkit.Logger(t)})
}
