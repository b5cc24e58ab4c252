package config

import (
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/configfile"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{"minimal", "cloud: {url: https://c:8443}", ""},
		{"no cloud url", "", "cloud.url is required"},
		{"http url", "cloud: {url: http://c}", "cloud.url"},
		{"bad fingerprint", "cloud: {url: https://c, fingerprint: zz}", "cloud.fingerprint"},
		{"bad listen", "listen: nope\ncloud: {url: https://c}", "listen"},
		{"backoff order", "cloud: {url: https://c}\nuplink: {min_backoff: 10s, max_backoff: 1s}", "backoff"},
		{"durations", "cloud: {url: https://c}\nspool: {retry_after: 5s}\nheartbeat_interval: 1m", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			if err := configfile.Decode([]byte(tt.yaml), &c); err != nil {
				t.Fatal(err)
			}
			c.Finish()
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestUnknownKeyRejected(t *testing.T) {
	c := Default()
	if err := configfile.Decode([]byte("spool: {max_byte: 1}"), &c); err == nil {
		t.Fatal("got no error for misspelt key, want one")
	}
}
