package allowlist

import (
	"net/netip"
	"testing"
)

func TestCheckPrefix(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		ok     bool
	}{
		{"0.0.0.0/0", false},
		{"0.0.0.0/1", false},
		{"128.0.0.0/1", false},
		{"10.0.0.0/7", false},
		{"10.0.0.0/8", true},
		{"192.0.2.7/32", true},
		{"::/0", false},
		{"2000::/3", false},
		{"2001:db8::/31", false},
		{"2001:db8::/32", true},
		{"::ffff:0.0.0.0/96", false},
		{"::ffff:10.0.0.0/104", true},
	} {
		err := CheckPrefix(netip.MustParsePrefix(tc.prefix))
		if (err == nil) != tc.ok {
			t.Errorf("CheckPrefix(%s): got err %v, want ok=%v", tc.prefix, err, tc.ok)
		}
	}
}
