package cluster

import (
	"os"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/configfile"
)

// TestDocSampleConfig parses the sample `cluster:` section of docs/cluster.md.
func TestDocSampleConfig(t *testing.T) {
	b, err := os.ReadFile("../docs/cluster.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "```yaml\ncluster:")
	if start < 0 {
		t.Fatal("docs/cluster.md: no ```yaml cluster: sample")
	}
	body := doc[start+len("```yaml\n"):]
	body = body[:strings.Index(body, "```")]
	var v struct {
		Cluster Config `yaml:"cluster"`
	}
	v.Cluster = Default()
	if err := configfile.Decode([]byte(body), &v); err != nil {
		t.Fatalf("decode sample: %v", err)
	}
	if err := v.Cluster.Validate(); err != nil {
		t.Fatalf("validate sample: %v", err)
	}
	if got, want := v.Cluster.NodeID, "relay-1"; got != want {
		t.Errorf("node_id: got %q, want %q", got, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		ok     bool
	}{
		{"defaults with dir and id", func(*Config) {}, true},
		{"no data dir", func(c *Config) { c.DataDir = "" }, false},
		{"no node id", func(c *Config) { c.NodeID = "" }, false},
		{"bad bind", func(c *Config) { c.Bind = "nope" }, false},
		{"lease over heartbeat", func(c *Config) { c.LeaderLeaseTimeout = 2 * c.HeartbeatTimeout }, false},
		{"zero apply timeout", func(c *Config) { c.ApplyTimeout = 0 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.DataDir, c.NodeID = "/tmp/x", "n1"
			tt.mutate(&c)
			if got := c.Validate() == nil; got != tt.ok {
				t.Fatalf("valid: got %v, want %v (%v)", got, tt.ok, c.Validate())
			}
		})
	}
}
