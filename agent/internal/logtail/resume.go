package logtail

import (
	"os"
	"path/filepath"
	"sort"

	"github.com/gatehouse/gatehouse/agent/internal/ring"
)

// rotatedWhileStopped accounts, at the first scan, for the checkpointed
// files that no glob matches any more (seen holds the matched ones). A
// rotation while the agent was stopped renamed them (app.log -> app.log.1,
// which "*.log" does not match): they are looked for by identity in the
// globs' directories and returned, to be finished from their checkpoints.
// The others are gone: the loss is logged and their checkpoints dropped.
func (t *Tailer) rotatedWhileStopped(seen map[ring.FileID]bool) []candidate {
	want := map[ring.FileID]ring.Checkpoint{}
	for id, c := range t.start {
		// The ring holds the checkpoints of every tailer (logs, auth): a
		// file is this tailer's when its last path matches one of its globs.
		if !seen[id] && t.owns(c.Path) {
			want[id] = c
		}
	}
	if len(want) == 0 {
		return nil
	}
	var found []candidate
	dirs := t.globDirs()
	for _, dir := range dirs {
		des, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, de := range des {
			if !de.Type().IsRegular() {
				continue
			}
			p := filepath.Join(dir, de.Name())
			fi, err := os.Stat(p)
			if err != nil {
				continue
			}
			id, err := fileID(fi)
			if err != nil {
				continue
			}
			if _, ok := want[id]; !ok {
				continue
			}
			delete(want, id)
			found = append(found, candidate{path: p, id: id, size: fi.Size(), maxLine: t.maxLineFor(p)})
		}
	}
	var forget []ring.FileID
	for id, c := range want {
		delete(t.start, id)
		forget = append(forget, id)
		t.lostWhileStopped("rotated away and removed", c, true)
	}
	if len(forget) > 0 && t.ckpts != nil {
		t.ckpts.ForgetCheckpoints(forget)
	}
	sort.Slice(found, func(i, j int) bool { return found[i].path < found[j].path })
	return found
}

// maxLineFor is the MaxLine of a rotated file: that of a source with a glob
// in its directory, the largest such.
func (t *Tailer) maxLineFor(path string) int {
	n := 0
	for _, src := range t.opts.Sources {
		for _, g := range src.Globs {
			if ok, _ := filepath.Match(filepath.Dir(g), filepath.Dir(path)); ok {
				n = max(n, src.MaxLine)
			}
		}
	}
	if n == 0 {
		n = DefaultMaxLine
	}
	return n
}

// globDirs returns the existing directories the globs look into.
func (t *Tailer) globDirs() []string {
	set := map[string]bool{}
	for _, src := range t.opts.Sources {
		for _, g := range src.Globs {
			ds, err := filepath.Glob(filepath.Dir(g))
			if err != nil {
				continue
			}
			for _, d := range ds {
				set[d] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// owns reports whether one of the globs matches path.
func (t *Tailer) owns(path string) bool {
	for _, src := range t.opts.Sources {
		for _, g := range src.Globs {
			if ok, _ := filepath.Match(g, path); ok {
				return true
			}
		}
	}
	return false
}

// rememberFinished keeps f's last checkpoint as finished, for as long as a
// restart may find it again in the ring's undelivered entries. At most
// maxFinished are kept, the most recent: an older one forgotten costs at
// worst a false loss warning.
func (t *Tailer) rememberFinished(f *followed) {
	if len(t.finished) >= maxFinished {
		var oldest ring.FileID
		first := true
		for id, c := range t.finished {
			if first || c.at < t.finished[oldest].at {
				oldest, first = id, false
			}
		}
		delete(t.finished, oldest)
	}
	t.finishN++
	t.finished[f.id] = savedCheckpoint{
		Checkpoint: ring.Checkpoint{Dev: f.id.Dev, Ino: f.id.Ino, Gen: f.gen, Offset: f.offset, Path: f.path},
		HeadLen:    f.headLen, HeadSum: f.headSum, Finished: true, at: t.finishN,
	}
}
