package e2e

import (
	"strings"
	"testing"
	"time"
)

// An isolation allow-list that lets an isolated host reach the internet
// (0.0.0.0/0, or the same in two /1 halves) is refused by the cloud's API
// with a message naming the entry, and the tenant's list is left as it was.
func TestIsolationAllowListRefusesWholeInternet(t *testing.T) {
	s := newCloudSite(t, 2*time.Minute)
	if _, err := s.cloud.Admin.SetAllowList(s.ctx, s.site.TenantID, []string{"192.0.2.0/24"}, nil); err != nil {
		t.Fatal(err)
	}
	for _, cidrs := range [][]string{{"0.0.0.0/0"}, {"0.0.0.0/1", "128.0.0.0/1"}, {"2000::/3"}} {
		_, err := s.cloud.Admin.SetAllowList(s.ctx, s.site.TenantID, cidrs, nil)
		if err == nil || !strings.Contains(err.Error(), "is wider than /") {
			t.Errorf("allow-list %v: got err %v, want a refusal that says it is too wide", cidrs, err)
		}
	}
	al, err := s.cloud.Admin.GetAllowList(s.ctx, s.site.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	if len(al.CIDRs) != 1 || al.CIDRs[0] != "192.0.2.0/24" {
		t.Fatalf("allow-list after the refusals: got %v, want [192.0.2.0/24]", al.CIDRs)
	}
}
