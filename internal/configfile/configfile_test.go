package configfile

import (
	"strings"
	"testing"
	"time"
)

type sample struct {
	Listen string        `yaml:"listen"`
	Every  time.Duration `yaml:"every"`
	Nested struct {
		Max int64 `yaml:"max"`
	} `yaml:"nested"`
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    sample
		wantErr string
	}{
		{"empty keeps defaults", "", sample{Listen: ":443", Every: time.Second}, ""},
		{"values", "listen: ':8443'\nevery: 5m\nnested: {max: 7}\n", sample{Listen: ":8443", Every: 5 * time.Minute, Nested: struct {
			Max int64 `yaml:"max"`
		}{7}}, ""},
		{"unknown key", "lisen: ':1'\n", sample{}, "field lisen not found"},
		{"bad duration", "every: soon\n", sample{}, "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := sample{Listen: ":443", Every: time.Second}
			err := Decode([]byte(tc.in), &got)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
