package isolate

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"
)

type scriptResolver struct {
	addrs map[string][]netip.Addr
	ttl   time.Duration
	err   error
	calls int
}

func (r *scriptResolver) Resolve(_ context.Context, name string) ([]netip.Addr, time.Duration, error) {
	r.calls++
	if r.err != nil {
		return nil, 0, r.err
	}
	return r.addrs[name], r.ttl, nil
}

func TestNamesRefreshByTTL(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	a1, a2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	r := &scriptResolver{addrs: map[string][]netip.Addr{"a.example": {a1}}, ttl: 5 * time.Second}
	n := newNames(r)
	n.set([]string{"a.example"})
	steps := []struct {
		name        string
		at          time.Duration
		change      func()
		wantChanged bool
		wantErr     bool
		wantCalls   int
		wantDue     time.Duration
	}{
		{"first resolve, TTL raised to MinTTL", 0, nil, true, false, 1, MinTTL},
		{"not due yet", MinTTL - time.Second, nil, false, false, 1, MinTTL},
		{"due, same answer", MinTTL, nil, false, false, 2, 2 * MinTTL},
		{"due, new answer", 2 * MinTTL, func() { r.addrs["a.example"] = []netip.Addr{a2, a1}; r.ttl = 10 * time.Hour }, true, false, 3, 2*MinTTL + MaxTTL},
		{"failure keeps addresses, retries", 2*MinTTL + MaxTTL, func() { r.err = errors.New("SERVFAIL") }, false, true, 4, 2*MinTTL + MaxTTL + RetryAfter},
	}
	for _, s := range steps {
		if s.change != nil {
			s.change()
		}
		changed, err := n.refresh(context.Background(), t0.Add(s.at))
		if changed != s.wantChanged || (err != nil) != s.wantErr {
			t.Errorf("%s: got changed %v err %v, want %v and error %v", s.name, changed, err, s.wantChanged, s.wantErr)
		}
		if r.calls != s.wantCalls {
			t.Errorf("%s: got %d lookups, want %d", s.name, r.calls, s.wantCalls)
		}
		if due, _ := n.due(); !due.Equal(t0.Add(s.wantDue)) {
			t.Errorf("%s: got due %v, want %v", s.name, due.Sub(t0), s.wantDue)
		}
	}
	if got := n.addrs(); len(got) != 2 {
		t.Errorf("addresses after a failed refresh: got %v, want the last 2", got)
	}
	n.set(nil)
	if _, ok := n.due(); ok {
		t.Errorf("due with no names: got ok, want none")
	}
}

func TestPolicyNormalize(t *testing.T) {
	p := Policy{Isolated: true,
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::1/32")},
		AllowNames: []string{"B.example.", "b.example", " a.example"}}.Normalize()
	if got, want := len(p.AllowCIDRs), 2; got != want {
		t.Errorf("CIDRs: got %v, want %d", p.AllowCIDRs, want)
	}
	if got := p.AllowNames; len(got) != 2 || got[0] != "a.example" || got[1] != "b.example" {
		t.Errorf("names: got %q, want [a.example b.example]", got)
	}
}
