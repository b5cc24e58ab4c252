package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	body := `data_dir: ` + dir + `
relays: ["relay.example:443", "10.0.0.2:443"]
relay_fingerprint: "SHA256:` + strings.Repeat("AB", 32) + `"
hostname: h1
batch: {max_delay: 250ms}
logs:
  - paths: ["/var/log/app/*.log", "/var/log/[a-z]*.log"]
`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.RelayFingerprint, strings.Repeat("ab", 32); got != want {
		t.Errorf("fingerprint: got %q, want %q", got, want)
	}
	if got, want := c.Batch.MaxDelay, 250*time.Millisecond; got != want {
		t.Errorf("max_delay: got %s, want %s", got, want)
	}
	if got, want := c.Batch.MaxEvents, 500; got != want {
		t.Errorf("max_events default: got %d, want %d", got, want)
	}
	if got, want := c.Transport, (Transport{Mode: "auto", TCPDelay: 300 * time.Millisecond, QUICReprobe: 10 * time.Minute}); got != want {
		t.Errorf("transport defaults: got %+v, want %+v", got, want)
	}
	if got, want := c.HeartbeatInterval, 5*time.Minute; got != want {
		t.Errorf("heartbeat default: got %s, want %s", got, want)
	}
}

func TestInvalid(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "relays: [a:1]\nbogus: 1\n", "bogus"},
		{"no relays", "data_dir: /x\n", "relays"},
		{"relay without port", "relays: [relay]\n", "host:port"},
		{"double star", "relays: [a:1]\nlogs: [{paths: [\"/var/log/**/x.log\"]}]\n", `"**" is not supported`},
		{"relative glob", "relays: [a:1]\nlogs: [{paths: [\"x/*.log\"]}]\n", "absolute"},
		{"bad range", "relays: [a:1]\nlogs: [{paths: [\"/var/log/[a-.log\"]}]\n", "syntax"},
		{"bad fingerprint", "relays: [a:1]\nrelay_fingerprint: abc\n", "fingerprint"},
		{"tiny ring", "relays: [a:1]\nring: {max_bytes: 10}\n", "ring.max_bytes"},
		{"negative sync_after", "relays: [a:1]\nring: {sync_after: -1s}\n", "ring.sync_after"},
		{"status every 100ms", "relays: [a:1]\nstatus_interval: 100ms\n", "status_interval"},
		{"bad mode", "relays: [a:1]\ntransport: {mode: udp}\n", "transport.mode"},
		{"unknown transport key", "relays: [a:1]\ntransport: {quic_retry: 1m}\n", "quic_retry"},
		{"short reprobe", "relays: [a:1]\ntransport: {quic_reprobe: 1s}\n", "transport.quic_reprobe"},
		{"proxy scheme", "relays: [a:1]\nproxy: socks5://h:1080\n", "want http"},
		{"proxy without port", "relays: [a:1]\nproxy: http://u:secret@h\n", "host and port"},
		{"tiny max_line_bytes", "relays: [a:1]\nlogs: [{paths: [\"/x/*.log\"], max_line_bytes: 10}]\n", "logs[0].max_line_bytes"},
		{"huge max_line_bytes", "relays: [a:1]\nlogs: [{paths: [\"/x/*.log\"], max_line_bytes: 4194304}]\n", "want 1024..2097152"},
		{"max_line_bytes above the ring", "relays: [a:1]\nring: {max_bytes: 1048576}\nlogs: [{paths: [\"/x/*.log\"]}]\n", "quarter of ring.max_bytes"},
		{"proxy with quic", "relays: [a:1]\nproxy: http://h:3128\ntransport: {mode: quic}\n", "never uses it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "a.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("got %v, want the password left out", err)
			}
		})
	}
}

// The sample in docs/samples sets every key of Config, so that it shows
// operators every setting: a key added to the struct but not to the sample
// fails here.
func TestSampleHasEveryKey(t *testing.T) {
	const sample = "../../../docs/samples/agent.yaml"
	if _, err := Load(sample); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var missing []string
	missingKeys(reflect.TypeOf(Config{}), doc, "", &missing)
	if len(missing) > 0 {
		t.Fatalf("%s lacks keys of the config struct: %s", sample, strings.Join(missing, ", "))
	}
}

// missingKeys appends to out the yaml keys of struct type typ absent from m.
func missingKeys(typ reflect.Type, m map[string]any, prefix string, out *[]string) {
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" {
			missingKeys(f.Type, m, prefix, out)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		v, ok := m[name]
		if !ok {
			*out = append(*out, prefix+name)
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			// A list of structs: its first element shows every key.
			list, _ := v.([]any)
			first := map[string]any{}
			if len(list) > 0 {
				first, _ = list[0].(map[string]any)
			}
			missingKeys(ft.Elem(), first, prefix+name+"[0].", out)
			continue
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Duration(0)) {
			sub, _ := v.(map[string]any)
			missingKeys(ft, sub, prefix+name+".", out)
		}
	}
}
