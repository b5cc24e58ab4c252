package console

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/appliance-image/internal/settings"
)

func TestWizardAsksUntilValid(t *testing.T) {
	defaults := []byte("relay:\n  cloud: {url: \"https://cloud.example:8443\", fingerprint: \"\"}\n")
	in := strings.NewReader("10.0.0.5\n10.0.0.5/24\nnot-an-ip\n10.0.0.1\n10.0.0.53 x\n10.0.0.53 10.0.0.54\nshort\net-0123456789\n")
	var out bytes.Buffer
	raw, tok, err := Wizard(context.Background(), in, &out, defaults)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if tok != "et-0123456789" {
		t.Errorf("token %q", tok)
	}
	s, err := settings.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if s.Network.Address != "10.0.0.5/24" || s.Network.Gateway != "10.0.0.1" || strings.Join(s.Network.DNS, " ") != "10.0.0.53 10.0.0.54" {
		t.Errorf("network %+v", s.Network)
	}
	if v, _ := s.View(); v.Cloud.URL != "https://cloud.example:8443" {
		t.Errorf("cloud url %q, want the image default", v.Cloud.URL)
	}
	for _, complaint := range []string{"want an address with its prefix length", "want an IP address", `"x" is not an IP address`, "want the token exactly"} {
		if !strings.Contains(out.String(), complaint) {
			t.Errorf("the wizard did not say %q:\n%s", complaint, out.String())
		}
	}
}

func TestWizardNeedsImageDefaults(t *testing.T) {
	_, _, err := Wizard(context.Background(), strings.NewReader("dhcp\net-0123456789\n"), &bytes.Buffer{}, nil)
	if err == nil || !strings.Contains(err.Error(), "relay.cloud.url") {
		t.Errorf("got %v, want an error naming relay.cloud.url (the image has no cloud)", err)
	}
}
