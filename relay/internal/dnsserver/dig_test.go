package dnsserver

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dig runs Debian's dig against the server and returns its short output.
func dig(t *testing.T, s *Server, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a := append([]string{"@" + s.Addr().Addr().String(), "-p", strconv.Itoa(int(s.Addr().Port())), "+time=5", "+tries=1"}, args...)
	out, err := exec.CommandContext(ctx, "dig", a...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(a, " "), err, out)
	}
	return string(out)
}

func TestDig(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig not installed (Debian bind9-dnsutils): skipping the dig test")
	}
	cfg := testConfig()
	cfg.Overrides = append(cfg.Overrides, Record{Name: "big.example.com", Type: "TXT", Value: strings.Repeat("z", 1500)})
	s, _ := start(t, cfg)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"+short", "ingest.cloud.example.com", "A"}, "192.0.2.10\n192.0.2.11\n"},
		{[]string{"+short", "+tcp", "ingest.cloud.example.com", "AAAA"}, "2001:db8::10\n"},
		{[]string{"+short", "api.cloud.example.com", "A"}, "ingest.cloud.example.com.\n192.0.2.10\n192.0.2.11\n"},
		{[]string{"+short", "+tcp", "api.cloud.example.com", "CNAME"}, "ingest.cloud.example.com.\n"},
		{[]string{"+short", "_gatehouse._tcp.cloud.example.com", "SRV"}, "10 5 443 ingest.cloud.example.com.\n"},
		{[]string{"+short", "+noedns", "cloud.example.com", "TXT"}, "\"v=gatehouse1 site=lab\"\n"},
	}
	for _, tt := range tests {
		if got := dig(t, s, tt.args...); got != tt.want {
			t.Errorf("dig %v: got %q, want %q", tt.args, got, tt.want)
		}
	}
	// Over UDP without retry, the big TXT comes back truncated; dig's
	// default retries over TCP and gets all of it.
	if got := dig(t, s, "+ignore", "+noedns", "big.example.com", "TXT"); !strings.Contains(got, " tc ") && !strings.Contains(got, " tc;") {
		t.Errorf("dig +ignore: got no tc flag:\n%s", got)
	}
	if got := dig(t, s, "+short", "big.example.com", "TXT"); strings.Count(got, "z") != 1500 {
		t.Errorf("dig with TCP retry: got %d z, want 1500:\n%s", strings.Count(got, "z"), got)
	}
	if got := dig(t, s, "other.example.com", "A"); !strings.Contains(got, "status: REFUSED") {
		t.Errorf("dig unknown name with forwarding off: got\n%s", got)
	}
}
