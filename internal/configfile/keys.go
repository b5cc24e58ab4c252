package configfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MissingKeys lists, as dotted paths ("dns.rate_limit.qps"), every key of
// the config struct v (by its yaml tags, inline structs flattened) that the
// YAML document doc does not show. For a list of structs, each field must
// appear in at least one element. The sample configs in docs/ promise every
// key: their tests fail when a key is added to the struct but not to the sample.
func MissingKeys(doc []byte, v any) ([]string, error) {
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(doc)).Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	var top *yaml.Node
	if len(root.Content) > 0 {
		top = root.Content[0]
	}
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("config type %s: want a struct", t)
	}
	var missing []string
	missingKeys(t, []*yaml.Node{top}, "", &missing)
	return missing, nil
}

var durationType = reflect.TypeOf(time.Duration(0))

// missingKeys checks struct type t against the mapping nodes (one, or every
// element of a list) under prefix.
func missingKeys(t reflect.Type, nodes []*yaml.Node, prefix string, missing *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if strings.Contains(opts, "inline") {
			missingKeys(ft, nodes, prefix, missing)
			continue
		}
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		var found []*yaml.Node
		for _, n := range nodes {
			if v := lookup(n, name); v != nil {
				found = append(found, v)
			}
		}
		if len(found) == 0 {
			*missing = append(*missing, prefix+name)
			continue
		}
		switch {
		case ft.Kind() == reflect.Struct && ft != durationType:
			missingKeys(ft, found, prefix+name+".", missing)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			var elems []*yaml.Node
			for _, n := range found {
				if n.Kind == yaml.SequenceNode {
					elems = append(elems, n.Content...)
				}
			}
			if len(elems) == 0 {
				*missing = append(*missing, prefix+name+"[] (no example element)")
				continue
			}
			missingKeys(ft.Elem(), []*yaml.Node{mergeMappings(elems)}, prefix+name+"[].", missing)
		}
	}
}

// lookup returns the value of key in mapping node n, or nil.
func lookup(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// mergeMappings joins list elements into one mapping: a field shown in any
// element counts as shown.
func mergeMappings(elems []*yaml.Node) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode}
	for _, e := range elems {
		if e.Kind == yaml.MappingNode {
			m.Content = append(m.Content, e.Content...)
		}
	}
	return m
}
