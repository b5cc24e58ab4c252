package settings

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"relay: {}\n", "relay.cloud.url is required"},
		{"network: {address: 10.0.0.1}\nrelay: {cloud: {url: https://c}}\n", "network.address"},
		{"management: [nonsense]\nrelay: {cloud: {url: https://c}}\n", "management"},
		{"update: {url: ftp://x, boot_tries: 0}\nrelay: {cloud: {url: https://c}}\n", "update.url"},
		{"update: {boot_tries: 0}\nrelay: {cloud: {url: https://c}}\n", "boot_tries"},
		{"colour: blue\nrelay: {cloud: {url: https://c}}\n", "colour"},
		{"relay: {cloud: {url: https://c}, listen: nope}\n", "relay.listen"},
	} {
		_, err := Parse([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q): got %v, want an error about %s", tc.in, err, tc.want)
		}
	}
}

func TestRelayYAML(t *testing.T) {
	s, err := Parse([]byte("hostname: r1\nmanagement: [10.0.0.0/8]\nrelay: {cloud: {url: https://c, fingerprint: ab}, data_dir: /elsewhere}\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.RelayYAML("tok-1")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	cloud := got["cloud"].(map[string]any)
	if got["data_dir"] != RelayDataDir || got["admin_listen"] != ":9100" || got["name"] != "r1" ||
		cloud["enrollment_token"] != "tok-1" || cloud["fingerprint"] != "ab" {
		t.Errorf("relay.yaml:\n%s", b)
	}
	v, _ := s.View()
	if v.AdminHealthURL() != "http://127.0.0.1:9100/readyz" {
		t.Errorf("health URL %s", v.AdminHealthURL())
	}
	s2, _ := Parse([]byte("relay: {cloud: {url: https://c}}\n"))
	b2, _ := s2.RelayYAML("")
	if !strings.Contains(string(b2), "admin_listen: 127.0.0.1:9100") {
		t.Errorf("without management networks the admin port must stay on loopback:\n%s", b2)
	}
}
