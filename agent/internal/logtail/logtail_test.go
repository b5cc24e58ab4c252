package logtail

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/agent/internal/ring"
)

// fakeRing takes events and merges their checkpoints at once, like the
// batcher+ring pair does at flush.
type fakeRing struct {
	msgs    []string
	offsets []int64
	flags   [][]string
	sizes   []int
	ckpt    map[ring.FileID]ring.Checkpoint
}

func newFakeRing() *fakeRing { return &fakeRing{ckpt: map[ring.FileID]ring.Checkpoint{}} }

func (r *fakeRing) Add(ev []byte, ck *ring.Checkpoint) error {
	var doc struct {
		Message string `json:"message"`
		Log     struct {
			Offset int64    `json:"offset"`
			Flags  []string `json:"flags"`
		} `json:"log"`
	}
	if err := json.Unmarshal(ev, &doc); err != nil {
		return err
	}
	r.msgs = append(r.msgs, doc.Message)
	r.offsets = append(r.offsets, doc.Log.Offset)
	r.flags = append(r.flags, doc.Log.Flags)
	r.sizes = append(r.sizes, len(ev))
	if old, ok := r.ckpt[ck.ID()]; !ok || ck.After(old) {
		r.ckpt[ck.ID()] = *ck
	}
	return nil
}

func (r *fakeRing) Checkpoints() []ring.Checkpoint {
	var cs []ring.Checkpoint
	for _, c := range r.ckpt {
		cs = append(cs, c)
	}
	return cs
}

func (r *fakeRing) ForgetCheckpoints(ids []ring.FileID) {
	for _, id := range ids {
		delete(r.ckpt, id)
	}
}

func (r *fakeRing) take() []string { m := r.msgs; r.msgs = nil; return m }

func newTailer(t *testing.T, r *fakeRing, ckPath string, globs ...string) *Tailer {
	t.Helper()
	tl := New(Options{Globs: globs, CheckpointPath: ckPath}, r, r)
	if err := tl.loadCheckpoints(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tl.closeAll)
	return tl
}

func write(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func step(tl *Tailer) { tl.scan(); tl.poll() }

func want(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

func TestGlobRanges(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a.log", "b.log", "1.log", "ab.log"} {
		write(t, filepath.Join(dir, n), n+"\n")
	}
	r := newFakeRing()
	tl := newTailer(t, r, "", filepath.Join(dir, "[a-z].log"))
	step(tl)
	want(t, "[a-z].log", r.take(), []string{"a.log", "b.log"})
}

func TestPartialLineWaits(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	write(t, p, "one\nabc")
	r := newFakeRing()
	tl := newTailer(t, r, "", filepath.Join(dir, "*.log"))
	step(tl)
	want(t, "before newline", r.take(), []string{"one"})
	write(t, p, "def\r\ntwo\n")
	tl.poll()
	want(t, "after newline", r.take(), []string{"abcdef", "two"})
	if got, want := r.offsets, []int64{0, 4, 12}; !reflect.DeepEqual(got, want) {
		t.Fatalf("log.offset: got %v, want %v", got, want)
	}
}

func TestRotationByRename(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	write(t, p, "old1\n")
	r := newFakeRing()
	tl := newTailer(t, r, "", p)
	step(tl)
	want(t, "first", r.take(), []string{"old1"})
	// The writer still holds the old file after the rename.
	old, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatal(err)
	}
	old.WriteString("old2\nold3")
	write(t, p, "new1\n")
	tl.poll()
	want(t, "after rename", r.take(), []string{"old2", "new1"})
	old.WriteString("\n")
	tl.poll()
	want(t, "late old line", r.take(), []string{"old3"})
	for i := 0; i < 3; i++ {
		tl.poll()
	}
	if got := len(tl.files); got != 1 {
		t.Fatalf("followed files after old one went idle: got %d, want 1", got)
	}
	write(t, p, "new2\n")
	tl.poll()
	want(t, "new file", r.take(), []string{"new2"})
}

func TestCopyTruncate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	write(t, p, "a-long-line-1\na-long-line-2\n")
	r := newFakeRing()
	tl := newTailer(t, r, "", p)
	step(tl)
	want(t, "before", r.take(), []string{"a-long-line-1", "a-long-line-2"})
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	write(t, p, "after\n")
	tl.poll()
	want(t, "after truncate", r.take(), []string{"after"})
	if got := r.offsets[len(r.offsets)-1]; got != 0 {
		t.Fatalf("offset after truncate: got %d, want 0", got)
	}
}

func TestRestartResumesAtCheckpoint(t *testing.T) {
	tests := []struct {
		name     string
		fromRing bool // the ring knows the checkpoint (else only checkpoints.json)
	}{
		{"ring checkpoint", true},
		{"checkpoint file", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "app.log")
			ckPath := filepath.Join(dir, "checkpoints.json")
			write(t, p, "1\n2\n3")
			r := newFakeRing()
			tl := newTailer(t, r, ckPath, p)
			step(tl)
			tl.save()
			want(t, "first run", r.take(), []string{"1", "2"})
			tl.closeAll() // kill -9: nothing else saved

			write(t, p, "\n4\n")
			r2 := newFakeRing()
			if tt.fromRing {
				r2.ckpt = r.ckpt
				os.Remove(ckPath)
			}
			tl2 := newTailer(t, r2, ckPath, p)
			step(tl2)
			want(t, "second run", r2.take(), []string{"3", "4"})
		})
	}
}

func TestLongLines(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	r := newFakeRing()
	tl := New(Options{Globs: []string{p}, MaxLine: 8}, r, r)
	if err := tl.loadCheckpoints(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tl.closeAll)
	// Exactly MaxLine stays whole; one more byte is cut and flagged; a long
	// line written in pieces is one event at its newline.
	write(t, p, "12345678\n123456789\nabcdefghij")
	step(tl)
	want(t, "first", r.take(), []string{"12345678", "12345678"})
	write(t, p, "klmnop")
	tl.poll()
	want(t, "long line without its newline yet", r.take(), nil)
	write(t, p, "qrs\nnext\n")
	tl.poll()
	want(t, "long line and the next", r.take(), []string{"abcdefgh", "next"})
	if got, want := r.flags, [][]string{nil, {"truncated"}, {"truncated"}, nil}; !reflect.DeepEqual(got, want) {
		t.Fatalf("log.flags: got %q, want %q", got, want)
	}
	if got, want := r.offsets, []int64{0, 9, 19, 39}; !reflect.DeepEqual(got, want) {
		t.Fatalf("log.offset: got %v, want %v", got, want)
	}
	for _, c := range r.ckpt {
		if c.Offset != 44 {
			t.Fatalf("checkpoint: got offset %d, want 44 (past the last newline)", c.Offset)
		}
	}
	if got := tl.Stats().Truncated; got != 2 {
		t.Fatalf("truncated lines: got %d, want 2", got)
	}
}

// A line longer than the read buffer, and a multi-byte rune cut in two.
func TestLongLineAcrossReads(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	long := strings.Repeat("é", 100<<10) // 200 KiB
	write(t, p, long+"\nafter\n")
	r := newFakeRing()
	tl := New(Options{Globs: []string{p}, MaxLine: 64<<10 + 1}, r, r)
	tl.loadCheckpoints()
	t.Cleanup(tl.closeAll)
	step(tl)
	got := r.take()
	if len(got) != 2 || got[1] != "after" {
		t.Fatalf("got %d events (%.20q...), want the long line then \"after\"", len(got), got)
	}
	if want := long[:64<<10]; got[0] != want {
		t.Fatalf("kept %d bytes, want the first %d (whole runes)", len(got[0]), len(want))
	}
}

// A line of control characters that JSON escaping would blow up past a
// frame is cut further.
func TestEscapedLineFitsAnEvent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	write(t, p, strings.Repeat("\x01", 1<<20)+"\nok\n")
	r := newFakeRing()
	tl := New(Options{Globs: []string{p}}, r, r)
	tl.loadCheckpoints()
	t.Cleanup(tl.closeAll)
	step(tl)
	if got := r.take(); len(got) != 2 || got[1] != "ok" {
		t.Fatalf("got %d events, want 2", len(got))
	}
	if r.sizes[0] > maxEvent || !reflect.DeepEqual(r.flags[0], []string{"truncated"}) {
		t.Fatalf("event of %d bytes flagged %q, want at most %d and truncated", r.sizes[0], r.flags[0], maxEvent)
	}
}
