package dnsserver

import (
	"os"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/configfile"
)

// TestDocsConfigParses decodes the sample `dns:` section of docs/dns.md
// strictly over Default() and validates it. The section is the relay's
// (relay/internal/config), which adds `enabled` around Config.
func TestDocsConfigParses(t *testing.T) {
	b, err := os.ReadFile("../../../docs/dns.md")
	if err != nil {
		t.Skipf("docs/dns.md: %v", err)
	}
	doc := string(b)
	i := strings.Index(doc, "```yaml\n")
	j := strings.Index(doc[i+8:], "```")
	if i < 0 || j < 0 {
		t.Fatal("docs/dns.md: no yaml block")
	}
	type section struct {
		Enabled bool `yaml:"enabled"`
		Config  `yaml:",inline"`
	}
	v := struct {
		DNS section `yaml:"dns"`
	}{DNS: section{Config: Default()}}
	if err := configfile.Decode([]byte(doc[i+8:i+8+j]), &v); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := v.DNS.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if got := len(v.DNS.Overrides); got != 5 {
		t.Errorf("overrides: got %d, want 5", got)
	}
}
