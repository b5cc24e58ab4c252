package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/agent/internal/config"
)

func TestSampleConfigParses(t *testing.T) {
	c, err := config.Load("../../../docs/samples/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Ring.MaxBytes, int64(104857600); got != want {
		t.Fatalf("ring.max_bytes: got %d, want %d", got, want)
	}
	if got, want := c.Transport.Mode, "auto"; got != want {
		t.Fatalf("transport.mode: got %q, want %q", got, want)
	}
	if got, want := c.Transport.QUICReprobe.String(), "10m0s"; got != want {
		t.Fatalf("transport.quic_reprobe: got %s, want %s", got, want)
	}
}

func TestIDCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte("data_dir: "+dir+"\nrelays: [\"127.0.0.1:1\"]\n"), 0o600)
	var first, second bytes.Buffer
	for _, out := range []*bytes.Buffer{&first, &second} {
		root := newRoot()
		root.SetOut(out)
		root.SetArgs([]string{"id", "--config", cfg})
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.TrimSpace(first.String()); len(got) != 64 || got != strings.TrimSpace(second.String()) {
		t.Fatalf("id: got %q then %q, want the same 64 hex digits", got, second.String())
	}
}

// status --config FILE of an agent run by hand shows that config's paths,
// not the packaged ones.
func TestStatusByHandConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte("data_dir: "+dir+"\nrelays: [\"127.0.0.1:1\"]\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "status.json"), []byte(`{"agent_id":"a1","state":"connected"}`), 0o600)
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetArgs([]string{"status", "--config", cfg})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if strings.Contains(text, "missing") || strings.Contains(text, "/opt/gatehouse") || !strings.Contains(text, cfg) || !strings.Contains(text, "connected") {
		t.Fatalf("status --config: want %s's paths present and the state; got\n%s", cfg, text)
	}
}
