package config

import (
	"os"
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
		{"proxy", "cloud: {url: https://c, proxy: 'http://u:p@proxy.example:3128'}", ""},
		{"proxy no port", "cloud: {url: https://c, proxy: 'http://u:secret@proxy.example'}", "cloud.proxy"},
		{"proxy socks", "cloud: {url: https://c, proxy: 'socks5://proxy:1080'}", "scheme"},
		{"proxy junk", "cloud: {url: https://c, proxy: 'http://u:secret@[::1'}", "cloud.proxy"},
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

// A bad cloud.proxy is reported without its password.
func TestProxyErrorHidesPassword(t *testing.T) {
	for _, p := range []string{"http://u:secret@proxy.example", "ftp://u:secret@proxy:21", "http://u:secret@[::1", "http://u:secret@p:1/x"} {
		c := Default()
		c.Cloud.URL = "https://c"
		c.Cloud.Proxy = p
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: got no error, want one", p)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("got %q, want the password left out", err)
		}
	}
}

// The sample in docs/samples parses and shows the proxy setting.
func TestSampleConfig(t *testing.T) {
	c, err := Load("../../../docs/samples/relay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.Finish()
	if err := c.Validate(); err != nil {
		t.Fatalf("got %v, want a valid sample", err)
	}
	if got, want := c.Cloud.Proxy, ""; got != want {
		t.Errorf("cloud.proxy: got %q, want %q (the default: environment variables)", got, want)
	}
}

// The sample shows every key of the config (docs promise it): a key added
// to Config, cluster.Config or dnsserver.Config must be added there too.
func TestSampleConfigShowsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../../docs/samples/relay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	missing, err := configfile.MissingKeys(b, &Config{})
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("docs/samples/relay.yaml lacks %s", strings.Join(missing, ", "))
	}
}

func TestUnknownKeyRejected(t *testing.T) {
	c := Default()
	if err := configfile.Decode([]byte("spool: {max_byte: 1}"), &c); err == nil {
		t.Fatal("got no error for misspelt key, want one")
	}
}
