// Package collecttest holds what collector tests share: a sink that keeps
// events in memory, and a walk of a decoded event by path.
package collecttest

import (
	"encoding/json"
	"sync"

	"github.com/gatehouse/gatehouse/agent/internal/ring"
)

// MemSink keeps events in memory.
type MemSink struct {
	mu     sync.Mutex
	events []map[string]any
}

// Add decodes and keeps ev.
func (s *MemSink) Add(ev []byte, _ *ring.Checkpoint) error {
	var m map[string]any
	if err := json.Unmarshal(ev, &m); err != nil {
		return err
	}
	s.mu.Lock()
	s.events = append(s.events, m)
	s.mu.Unlock()
	return nil
}

// Events returns a copy of what was added.
func (s *MemSink) Events() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.events...)
}

// Get walks a decoded event by dotted path ("process.parent.pid").
func Get(m map[string]any, path string) any {
	var cur any = m
	start := 0
	for i := 0; i <= len(path); i++ {
		if i == len(path) || path[i] == '.' {
			mm, ok := cur.(map[string]any)
			if !ok {
				return nil
			}
			cur = mm[path[start:i]]
			start = i + 1
		}
	}
	return cur
}
