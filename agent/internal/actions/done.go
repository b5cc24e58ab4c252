package actions

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/gatehouse/gatehouse/internal/atomicfile"
)

// Bounds of the done-command log.
const (
	maxDone       = 512
	maxDoneOutput = 64 << 10
)

type doneEntry struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
	Output []byte `json:"output,omitempty"`
	// Rerun marks a read-only command whose output was too large to
	// keep: a re-delivery runs it again (no side effect).
	Rerun bool `json:"rerun,omitempty"`
}

// doneLog is a small persisted LRU of done commands, oldest first.
type doneLog struct {
	path    string
	loaded  bool
	entries []doneEntry
}

func (d *doneLog) load() error {
	if d.loaded {
		return nil
	}
	b, err := os.ReadFile(d.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read done commands %s: %w", d.path, err)
	}
	if err == nil {
		if err := json.Unmarshal(b, &d.entries); err != nil {
			// A corrupt log only costs idempotency of old commands.
			d.entries = nil
		}
	}
	d.loaded = true
	return nil
}

func (d *doneLog) get(id string) (Result, bool) {
	if err := d.load(); err != nil {
		return Result{}, false
	}
	for _, e := range d.entries {
		if e.ID == id && !e.Rerun {
			return Result{OK: e.OK, Reason: e.Reason, Output: e.Output}, true
		}
	}
	return Result{}, false
}

func (d *doneLog) put(id, typ string, r Result) error {
	if err := d.load(); err != nil {
		return err
	}
	e := doneEntry{ID: id, Type: typ, OK: r.OK, Reason: r.Reason, Output: r.Output}
	if len(r.Output) > maxDoneOutput {
		e.Output = nil
		e.Rerun = typ == TypeRetrieveFile || typ == TypeRetrieveSupportBundle
	}
	d.entries = append(d.entries, e)
	if len(d.entries) > maxDone {
		d.entries = d.entries[len(d.entries)-maxDone:]
	}
	b, err := json.Marshal(d.entries)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(d.path, b, 0o600); err != nil {
		return fmt.Errorf("write done commands %s: %w", d.path, err)
	}
	return nil
}
