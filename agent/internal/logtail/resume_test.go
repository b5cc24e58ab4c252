package logtail

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// restartTailer is a tailer started again over the ring r (its checkpoints
// survive, as the ring's entries do) with its log in buf.
func restartTailer(t *testing.T, r *fakeRing, ckPath string, buf *bytes.Buffer, globs ...string) *Tailer {
	t.Helper()
	tl := New(Options{Globs: globs, CheckpointPath: ckPath, Logger: slog.New(slog.NewTextHandler(buf, nil))}, r, r)
	if err := tl.loadCheckpoints(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tl.closeAll)
	return tl
}

// firstRun follows dir/*.log of a new temporary dir after app.log got l1..l3.
func firstRun(t *testing.T) (dir, p, ckPath string, r *fakeRing, tl *Tailer) {
	t.Helper()
	dir = t.TempDir()
	p = filepath.Join(dir, "app.log")
	ckPath = filepath.Join(dir, "checkpoints.json")
	write(t, p, lines(1, 3))
	r = newFakeRing()
	tl = newTailer(t, r, ckPath, filepath.Join(dir, "*.log"))
	step(tl)
	return dir, p, ckPath, r, tl
}

func lines(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "l%d\n", i)
	}
	return b.String()
}

func names(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("l%d", i))
	}
	return out
}

// app.log renamed to app.log.1 (not matched by *.log) while the agent was
// stopped: the rest of app.log.1 is read from the checkpoint, before the
// new app.log, and the log says so.
func TestRotatedWhileStopped(t *testing.T) {
	for _, fromRing := range []bool{true, false} {
		t.Run(fmt.Sprintf("ring checkpoint %v", fromRing), func(t *testing.T) {
			dir, p, ckPath, r, tl := firstRun(t)
			tl.save()
			want(t, "first run", r.take(), names(1, 3))
			tl.closeAll()

			write(t, p, lines(4, 6)+"l7")
			if err := os.Rename(p, p+".1"); err != nil {
				t.Fatal(err)
			}
			write(t, p, lines(8, 9))
			r2 := newFakeRing()
			if fromRing {
				r2.ckpt = r.ckpt
				os.Remove(ckPath)
			}
			var log bytes.Buffer
			tl2 := restartTailer(t, r2, ckPath, &log, filepath.Join(dir, "*.log"))
			step(tl2)
			want(t, "after restart", r2.take(), append(names(4, 6), names(8, 9)...))
			if msg := "resuming app.log rotated to app.log.1 while stopped at offset 9"; !strings.Contains(log.String(), msg) {
				t.Errorf("log: want %q in\n%s", msg, log.String())
			}
			for range 3 {
				tl2.poll()
			}
			want(t, "unterminated last line of the rotated file", r2.take(), []string{"l7"})
			if got := len(tl2.files); got != 1 {
				t.Errorf("followed files after the rotated one was finished: got %d, want 1", got)
			}
		})
	}
}

// A file rotated and removed while the agent was stopped: a WARN with the
// bytes lost (known from the saved size), a counted lost file, and the new
// file read.
func TestRotatedAndRemovedWhileStopped(t *testing.T) {
	tests := []struct {
		name     string
		saveSize bool
		want     string
	}{
		{"size recorded", true, "lost_bytes=\"at least 9\""},
		{"size unknown", false, "lost_bytes=\"unknown (the file's size was not recorded)\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, p, ckPath, r, tl := firstRun(t)
			write(t, p, lines(4, 6)) // not yet read when the agent stops
			id := tl.order[0]
			tl.read(tl.files[id])
			r.take()
			// The ring's checkpoint is at l3; what was read later is lost.
			for id, c := range r.ckpt {
				c.Offset = 9
				r.ckpt[id] = c
			}
			tl.save()
			tl.closeAll()
			if !tt.saveSize {
				os.Remove(ckPath) // only the ring's checkpoint is left
			}

			// logrotate's order: rename, create, later remove (so the new
			// file cannot reuse the old one's inode).
			os.Rename(p, p+".1")
			write(t, p, lines(7, 7))
			os.Remove(p + ".1")
			var log bytes.Buffer
			tl2 := restartTailer(t, r, ckPath, &log, filepath.Join(dir, "*.log"))
			step(tl2)
			want(t, "after restart", r.take(), names(7, 7))
			out := log.String()
			if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "removed while the agent was stopped") || !strings.Contains(out, tt.want) {
				t.Errorf("log: want a WARN with %s in\n%s", tt.want, out)
			}
			if got := tl2.Stats().LostFiles; got != 1 {
				t.Errorf("lost files: got %d, want 1", got)
			}
			if _, ok := r.ckpt[id]; ok {
				t.Errorf("the lost file's checkpoint is still in the ring")
			}
		})
	}
}

// A file rotated and finished while the agent ran, then removed while it
// was stopped, with its checkpoint still in undelivered ring entries: no
// loss to report.
func TestFinishedFileRemovedWhileStopped(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	ckPath := filepath.Join(dir, "checkpoints.json")
	write(t, p, lines(1, 2))
	r := newFakeRing()
	tl := newTailer(t, r, ckPath, filepath.Join(dir, "*.log"))
	step(tl)
	ringCkpts := map[string]any{}
	for id, c := range r.ckpt {
		ringCkpts[fmt.Sprint(id)] = c
	}
	saved := r.Checkpoints() // as the ring's entries will have them after a restart
	os.Rename(p, p+".1")
	write(t, p, lines(3, 3))
	step(tl)
	for range 3 {
		tl.poll()
	}
	want(t, "first run", r.take(), names(1, 3))
	tl.save()
	tl.closeAll()

	os.Remove(p + ".1")
	for _, c := range saved {
		r.ckpt[c.ID()] = c
	}
	var log bytes.Buffer
	tl2 := restartTailer(t, r, ckPath, &log, filepath.Join(dir, "*.log"))
	step(tl2)
	want(t, "after restart", r.take(), nil)
	if strings.Contains(log.String(), "WARN") {
		t.Errorf("log: want no warning for a file finished before the stop:\n%s", log.String())
	}
	if got := tl2.Stats().LostFiles; got != 0 {
		t.Errorf("lost files: got %d, want 0", got)
	}
}

// The ring holds other tailers' checkpoints too (the auth collector's): a
// file this tailer's globs never matched is neither resumed, nor reported
// lost, nor forgotten.
func TestOtherTailersCheckpointsLeftAlone(t *testing.T) {
	dir := t.TempDir()
	auth := filepath.Join(dir, "auth.log")
	write(t, auth, lines(1, 2))
	r := newFakeRing()
	other := newTailer(t, r, "", auth)
	step(other)
	r.take()
	other.closeAll()
	os.Rename(auth, auth+".1") // rotated while stopped, beside this tailer's files
	write(t, auth, lines(3, 3))

	var log bytes.Buffer
	tl := restartTailer(t, r, "", &log, filepath.Join(dir, "*.txt"))
	step(tl)
	want(t, "this tailer's events", r.take(), nil)
	if strings.Contains(log.String(), "auth.log") || len(r.ckpt) != 1 {
		t.Errorf("want the other tailer's file left alone (ring checkpoints %d); log:\n%s", len(r.ckpt), log.String())
	}
}

// A file deleted while the agent was stopped and a new one that got its
// inode: the new one is read from its start, not from the old checkpoint.
// (The test rewrites the file in place: the same inode, other content.)
func TestInodeReusedWhileStopped(t *testing.T) {
	_, p, ckPath, r, tl := firstRun(t)
	want(t, "first run", r.take(), names(1, 3))
	tl.save()
	tl.closeAll()

	if err := os.WriteFile(p, []byte(lines(10, 14)), 0o644); err != nil { // longer than the checkpoint
		t.Fatal(err)
	}
	var log bytes.Buffer
	tl2 := restartTailer(t, r, ckPath, &log, filepath.Dir(p)+"/*.log")
	step(tl2)
	want(t, "after restart", r.take(), names(10, 14))
	if !strings.Contains(log.String(), "a new file got its inode") {
		t.Errorf("log: want the old file reported removed\n%s", log.String())
	}
}
