package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/gatehouse/gatehouse/cloud/internal/server"
)

func TestSampleConfig(t *testing.T) {
	got, err := server.Load("../../../docs/samples/cloud.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := server.Default(); !reflect.DeepEqual(got, want) {
		t.Fatalf("sample config: got %+v, want the defaults %+v", got, want)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ name, yaml string }{
		{"unknown key", "listne: \":1\"\n"},
		{"bad level", "log: {level: loud}\n"},
		{"bad listen", "listen: nope\n"},
	}
	for _, tc := range tests {
		p := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(p, []byte(tc.yaml), 0o600)
		if _, err := server.Load(p); err == nil {
			t.Errorf("%s: got no error, want one", tc.name)
		}
	}
}

func TestFlagsOverride(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("data_dir: /from/file\nlisten: \":1000\"\n"), 0o600)
	cmd := newCommand(os.Stderr)
	cmd.SetArgs([]string{"--config", p, "--data-dir", "/from/flag"})
	cmd.ParseFlags([]string{"--config", p, "--data-dir", "/from/flag"})
	cfg, err := loadConfig(cmd, flags{config: p, dataDir: "/from/flag"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/from/flag" || cfg.Listen != ":1000" || cfg.AdminListen != "127.0.0.1:9200" {
		t.Fatalf("got %+v, want data_dir from flag, listen from file, admin_listen default", cfg)
	}
}
