package uplink

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/gatehouse/gatehouse/relay/internal/cloudclient"
)

// Reachable means the cloud answered recently and nothing failed to reach
// it since: a success long ago, or a failure after it, is not reachable.
func TestReachableMeansRecentContact(t *testing.T) {
	clk := clockwork.NewFakeClockAt(time.Unix(1_700_000_000, 0))
	u := New(Options{Clock: clk, PollWait: 10 * time.Second, Logger: quiet()}, Deps{})
	lost := &cloudclient.ConnectError{Addr: "cloud.example:443", Phase: "connect", Wait: 5 * time.Second, Reason: "dropped by a firewall?"}
	verdict := &cloudclient.StatusError{HTTPStatus: http.StatusForbidden, Message: "no"}

	steps := []struct {
		what      string
		advance   time.Duration
		call      error
		noCall    bool
		reachable bool
		why       string // in Unreachable's error
	}{
		{what: "start", noCall: true, why: "not reached yet"},
		{what: "first answer", call: nil, reachable: true},
		{what: "within two polls", advance: 19 * time.Second, noCall: true, reachable: true},
		{what: "silent for more than two polls", advance: 2 * time.Second, noCall: true, why: "no answer for 21s"},
		{what: "answer again", call: nil, reachable: true},
		{what: "a verdict is an answer", advance: time.Second, call: verdict, reachable: true},
		{what: "a dropped connect", advance: time.Second, call: lost, why: "dropped by a firewall?"},
		{what: "still nothing since", advance: time.Second, noCall: true, why: "cloud unreachable since"},
		{what: "answer after the failure", call: nil, reachable: true},
	}
	for _, s := range steps {
		clk.Advance(s.advance)
		if !s.noCall {
			u.callResult(s.call)
		}
		st := u.Status()
		if st.CloudReachable != s.reachable {
			t.Fatalf("%s: cloud_reachable got %v, want %v (status %+v)", s.what, st.CloudReachable, s.reachable, st)
		}
		err := u.Unreachable()
		if s.reachable != (err == nil) {
			t.Fatalf("%s: Unreachable got %v, want nil=%v", s.what, err, s.reachable)
		}
		if err != nil && !strings.Contains(err.Error(), s.why) {
			t.Fatalf("%s: Unreachable got %q, want it to contain %q", s.what, err, s.why)
		}
	}
	if u.Status().LastContact.IsZero() {
		t.Fatal("last contact not recorded")
	}
}
