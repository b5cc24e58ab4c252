package main

import (
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/relay/internal/config"
)

func TestSampleConfigParses(t *testing.T) {
	cmd := newRootCmd()
	if err := cmd.ParseFlags([]string{"--listen", ":8443"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(cmd, "../../../docs/samples/relay.yaml", "", ":8443", "")
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	tests := []struct {
		name      string
		got, want any
	}{
		{"name", cfg.Name, "relay-dmz-1"},
		{"listen (flag)", cfg.Listen, ":8443"},
		{"advertise", cfg.Advertise, "relay.site.example:443"},
		{"cloud.url", cfg.Cloud.URL, "https://cloud.example:8443"},
		{"spool.max_bytes", cfg.Spool.MaxBytes, want.Spool.MaxBytes},
		{"uplink.max_upload_age", cfg.Uplink.MaxUploadAge, time.Second},
		{"heartbeat_interval", cfg.HeartbeatInterval, 5 * time.Minute},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

// --listen serves both transports; the help must not say UDP only.
func TestHelpListenNamesBothTransports(t *testing.T) {
	cmd := newRootCmd()
	var out strings.Builder
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "--listen ") && !(strings.Contains(line, "UDP") && strings.Contains(line, "TCP")) {
			t.Fatalf("--help: %q: want it to name UDP and TCP", line)
		}
	}
	if !strings.Contains(out.String(), "--listen ") {
		t.Fatalf("--help has no --listen:\n%s", out.String())
	}
}
