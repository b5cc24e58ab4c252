// Package configfile decodes the one YAML file each binary reads, strictly:
// an unknown or misspelt key is an error, not a silently ignored setting.
package configfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// Load decodes the YAML file at path into v, which should already hold the
// defaults; keys absent from the file keep them.
func Load(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if err := Decode(b, v); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Decode decodes YAML bytes strictly into v. An empty document is allowed.
func Decode(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return withKeyPaths(b, err)
	}
	return nil
}
