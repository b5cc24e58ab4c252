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
		{"unknown key", "lisen: ':1'\n", sample{}, "line 1: lisen: field lisen not found"},
		{"bad duration", "every: soon\n", sample{}, "line 1: every: cannot unmarshal !!str `soon` into time.Duration (want a duration such as 500ms, 30s or 5m)"},
		{"nested type error names the path", "listen: ':1'\nnested:\n  max: lots\n", sample{}, "line 3: nested.max: cannot unmarshal"},
		{"nested unknown key names the path", "nested:\n  mx: 1\n", sample{}, "line 2: nested.mx: field mx not found"},
		{"flow style picks the quoted value", "nested: {max: lots}\n", sample{}, "line 1: nested.max: cannot unmarshal !!str `lots`"},
		{"a list where a string belongs", "listen: [1, 2]\n", sample{}, "line 1: listen: cannot unmarshal !!seq into string"},
		{"long value", "every: five-minutes-or-so\n", sample{}, "line 1: every: cannot unmarshal"},
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
