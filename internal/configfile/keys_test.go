package configfile

import (
	"slices"
	"testing"
	"time"
)

type keysInner struct {
	QPS   float64 `yaml:"qps"`
	Burst int     `yaml:"burst"`
}

type keysEmbedded struct {
	Listen string `yaml:"listen"`
}

type keysRecord struct {
	Name string `yaml:"name"`
	TTL  int    `yaml:"ttl"`
}

type keysConfig struct {
	Every        time.Duration `yaml:"every"`
	Secret       string        `yaml:"-"`
	Limit        keysInner     `yaml:"limit"`
	keysEmbedded `yaml:",inline"`
	Records      []keysRecord `yaml:"records"`
	Names        []string     `yaml:"names"`
}

func TestMissingKeys(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"all shown", "every: 1s\nlimit: {qps: 1, burst: 2}\nlisten: ':1'\nrecords: [{name: a}, {ttl: 3}]\nnames: []\n", nil},
		{"empty", "", []string{"every", "limit", "listen", "records", "names"}},
		{"nested and inline missing", "every: 1s\nlimit: {qps: 1}\nrecords: [{name: a}]\nnames: [x]\n", []string{"limit.burst", "listen", "records[].ttl"}},
		{"list without example", "every: 1s\nlimit: {qps: 1, burst: 2}\nlisten: ':1'\nrecords: []\nnames: []\n", []string{"records[] (no example element)"}},
	}
	for _, tt := range tests {
		got, err := MissingKeys([]byte(tt.doc), &keysConfig{})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}
