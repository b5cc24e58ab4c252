package process

import (
	"os/exec"
	"testing"
)

func TestGetentUser(t *testing.T) {
	if _, err := exec.LookPath("getent"); err != nil {
		t.Skip("getent(1) not installed: NSS fallback not testable here")
	}
	for _, tc := range []struct{ id, want string }{
		{"0", "root"},
		{"3999999999", ""}, // no such user
	} {
		if got := getentUser(tc.id); got != tc.want {
			t.Errorf("getentUser(%s): got %q, want %q", tc.id, got, tc.want)
		}
	}
}

func TestUserNamesCached(t *testing.T) {
	var u users
	if got := u.name(0); got != "root" {
		t.Fatalf("name(0): got %q, want root", got)
	}
	u.names[0] = "cached"
	if got := u.name(0); got != "cached" {
		t.Errorf("second name(0): got %q, want the cached %q", got, "cached")
	}
}
