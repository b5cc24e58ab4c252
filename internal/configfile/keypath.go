package configfile

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The decoder's messages name a line but not the key ("line 7: cannot
// unmarshal !!str `soon` into time.Duration"); an operator with a long file
// and repeated keys (every section has max_bytes) needs the key path too.

var lineMsg = regexp.MustCompile(`^line (\d+): (.*)$`)

// located is a node of the document and the key path that leads to it.
type located struct {
	path  string
	node  *yaml.Node
	isKey bool
}

// withKeyPaths rewrites the decoder's type and unknown-field errors as
// "line N: key.path: message", one error per problem. Other errors pass
// through unchanged.
func withKeyPaths(src []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	var doc yaml.Node
	if yaml.Unmarshal(src, &doc) != nil {
		return err
	}
	var nodes []located
	walk(&doc, "", &nodes)
	var errs []error
	for _, e := range te.Errors {
		m := lineMsg.FindStringSubmatch(e)
		if m == nil {
			errs = append(errs, errors.New(e))
			continue
		}
		line, _ := strconv.Atoi(m[1])
		msg := friendlier(m[2])
		if p := pathAt(nodes, line, m[2]); p != "" {
			errs = append(errs, fmt.Errorf("line %d: %s: %s", line, p, msg))
		} else {
			errs = append(errs, fmt.Errorf("line %d: %s", line, msg))
		}
	}
	return errors.Join(errs...)
}

// walk lists every mapping key and every value with its key path
// (a.b[2].c).
func walk(n *yaml.Node, path string, out *[]located) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			walk(c, path, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			*out = append(*out, located{path: p, node: k, isKey: true}, located{path: p, node: v})
			walk(v, p, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			*out = append(*out, located{path: p, node: c})
			walk(c, p, out)
		}
	}
}

// pathAt picks the key path the message on line is about: for an unknown
// field the key of that name, else the value on that line the message
// quotes, else the last (innermost) value on the line.
func pathAt(nodes []located, line int, msg string) string {
	if f, ok := strings.CutPrefix(msg, "field "); ok {
		name, _, _ := strings.Cut(f, " ")
		for _, l := range nodes {
			if l.isKey && l.node.Line == line && l.node.Value == name {
				return l.path
			}
		}
	}
	quoted := ""
	if _, q, ok := strings.Cut(msg, "`"); ok {
		quoted, _, _ = strings.Cut(q, "`")
		quoted = strings.TrimSuffix(quoted, "...")
	}
	// A list or a map where a scalar belongs is quoted by its tag only: the
	// outermost node of that kind on the line is the one.
	kind := yaml.ScalarNode
	if strings.Contains(msg, "unmarshal !!seq") {
		kind = yaml.SequenceNode
	} else if strings.Contains(msg, "unmarshal !!map") {
		kind = yaml.MappingNode
	}
	last := ""
	for _, l := range nodes {
		if l.isKey || l.node.Line != line {
			continue
		}
		if kind != yaml.ScalarNode && l.node.Kind == kind {
			return l.path
		}
		if quoted != "" && l.node.Kind == yaml.ScalarNode && strings.HasPrefix(l.node.Value, quoted) {
			return l.path
		}
		last = l.path
	}
	return last
}

// friendlier adds what is wanted to the decoder's Go type names.
func friendlier(msg string) string {
	for typ, want := range map[string]string{
		"time.Duration": "a duration such as 500ms, 30s or 5m",
		"int64":         "a whole number",
		"int":           "a whole number",
		"bool":          "true or false",
		"string":        "a string",
		"[]string":      "a list of strings",
	} {
		if strings.HasSuffix(msg, " into "+typ) {
			return msg + " (want " + want + ")"
		}
	}
	return msg
}
