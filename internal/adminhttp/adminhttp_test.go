package adminhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// /readyz runs the ReadyFunc and every named check, names the failing
// check in its 503, and leaves out the checks a probe excludes.
func TestReadyzChecks(t *testing.T) {
	s, err := New("127.0.0.1:0", func() error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	s.AddCheck("cloud", func() error { return errors.New("cloud unreachable since 12:00") })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for _, tc := range []struct {
		path     string
		code     int
		contains string
	}{
		{"/readyz", http.StatusServiceUnavailable, "not ready: cloud: cloud unreachable since 12:00"},
		{"/readyz?exclude=cloud", http.StatusOK, "ready"},
		{"/readyz?exclude=spool", http.StatusServiceUnavailable, "cloud"},
	} {
		res, err := http.Get("http://" + s.Addr() + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.code || !strings.Contains(string(b), tc.contains) {
			t.Errorf("%s: got %d %q, want %d containing %q", tc.path, res.StatusCode, b, tc.code, tc.contains)
		}
	}
}
