// Package logtail follows log files chosen by glob and turns every line into
// an ECS event.
//
// Files are identified by (device, inode). Each poll reads every followed
// file from where it stopped to EOF; complete lines become events, a partial
// last line waits for its newline. Every rescan matches the globs again:
// a new identity is a new file, read from 0; an identity no longer matched
// (renamed away or deleted) is finished to EOF and then closed; a file that
// shrank was truncated (copytruncate) and is read again from 0.
//
// A line longer than its source's MaxLine keeps its first MaxLine bytes and
// is flagged log.flags: ["truncated"]; the rest of it, up to its newline, is
// skipped, so the next line is an event of its own.
//
// At start, a checkpointed file that no glob matches any more was rotated
// while the agent was stopped (app.log -> app.log.1): it is looked for by
// identity in the globs' directories and finished from its checkpoint; when
// it is gone, the loss is logged.
//
// Checkpoints: each event carries the offset just past its line; the batcher
// puts them into the ring in the same write as the batch, so the ring always
// knows how far each file went. The tailer copies the ring's checkpoints to
// <data_dir>/checkpoints.json now and then, and at start takes the furthest of
// both: a restart neither resends nor skips a line.
package logtail

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jonboulle/clockwork"

	"github.com/gatehouse/gatehouse/agent/internal/ecs"
	"github.com/gatehouse/gatehouse/agent/internal/ring"
	"github.com/gatehouse/gatehouse/internal/atomicfile"
)

// Sink takes events with the checkpoint each advances (the bulk batcher).
type Sink interface {
	Add(ev []byte, ck *ring.Checkpoint) error
}

// Checkpoints is what the ring offers about checkpoints.
type Checkpoints interface {
	Checkpoints() []ring.Checkpoint
	ForgetCheckpoints(ids []ring.FileID)
}

// DefaultMaxLine is the longest line kept whole unless a source says
// otherwise.
const DefaultMaxLine = 1 << 20

// maxEvent bounds one event's JSON: a batch holding it must fit a 4 MiB
// frame (framing.MaxFrameSize). A line of MaxLine bytes that escaping
// (control characters, invalid UTF-8) would blow up beyond it is cut further.
const maxEvent = 3 << 20

// Source is a set of globs whose lines are kept up to MaxLine bytes.
type Source struct {
	Globs   []string
	MaxLine int // DefaultMaxLine when 0
}

// Options configures a Tailer.
type Options struct {
	// Globs and MaxLine are one source; Sources adds more. A file matched by
	// several sources takes the largest MaxLine.
	Globs          []string
	MaxLine        int // longer lines are truncated; default DefaultMaxLine
	Sources        []Source
	CheckpointPath string // <data_dir>/checkpoints.json
	Source         ecs.Source
	Poll           time.Duration // read followed files; default 250ms
	Rescan         time.Duration // match globs again; default 5s
	SaveEvery      time.Duration // write CheckpointPath; default 5s
	Clock          clockwork.Clock
	Logger         *slog.Logger
}

type followed struct {
	id      ring.FileID
	path    string
	f       *os.File
	maxLine int
	gen     uint64
	offset  int64  // just past the last complete line handed out
	size    int64  // at the last read: what a loss while stopped would be
	headLen int    // bytes of the file's beginning hashed into headSum
	headSum string // tells the file from a later one with its inode
	partial []byte // bytes read after offset, no newline yet
	// long: partial is the first maxLine bytes of a longer line and skipped
	// bytes of it followed; the event goes out at its newline.
	long    bool
	skipped int64
	cutSaid bool // a truncated line of this file was logged at INFO
	gone    bool // no longer matched by the globs
	idle    int  // polls without data since gone
}

// savedCheckpoint is a record of CheckpointPath: the ring's checkpoint (or
// offset 0 for a file none of whose lines reached the ring yet), the file's
// size when saved (so that a file removed while the agent was stopped can be
// told how much it lost), the hash of its beginning (so that a new file that
// got its inode is not taken for it), and whether the file was finished
// (rotated away and read to its end: its checkpoint, still in undelivered
// ring entries, is no loss when the file is gone).
type savedCheckpoint struct {
	ring.Checkpoint
	Size     int64  `json:"size,omitempty"`
	HeadLen  int    `json:"head_len,omitempty"`
	HeadSum  string `json:"head_sha256,omitempty"`
	Finished bool   `json:"finished,omitempty"`
	at       uint64 // order of finishing, in memory only
}

// maxFinished bounds the finished files remembered in CheckpointPath.
const maxFinished = 64

// Tailer follows the files. Run owns all its state.
type Tailer struct {
	opts  Options
	sink  Sink
	ckpts Checkpoints
	log   *slog.Logger

	files map[ring.FileID]*followed
	order []ring.FileID // first seen first: an old file is finished before its successor
	// start holds the checkpoints of the files not yet opened; it is nil
	// after the first scan (files found later are new, read from 0).
	start     map[ring.FileID]ring.Checkpoint
	sizes     map[ring.FileID]int64           // sizes saved with the checkpoints
	heads     map[ring.FileID]head            // beginnings saved with the checkpoints
	finished  map[ring.FileID]savedCheckpoint // files finished, possibly still in the ring
	finishN   uint64
	buf       []byte
	saved     []byte // the checkpoint file as last written
	readN     int64  // bytes read so far (poll backs off while it stays put)
	lines     atomic.Uint64
	truncated atomic.Uint64
	lost      atomic.Uint64
	errors    atomic.Uint64
}

// New returns a Tailer; it starts nothing.
func New(opts Options, sink Sink, ckpts Checkpoints) *Tailer {
	if opts.Poll <= 0 {
		opts.Poll = 250 * time.Millisecond
	}
	if opts.Rescan <= 0 {
		opts.Rescan = 5 * time.Second
	}
	if opts.SaveEvery <= 0 {
		opts.SaveEvery = 5 * time.Second
	}
	if len(opts.Globs) > 0 {
		opts.Sources = append([]Source{{Globs: opts.Globs, MaxLine: opts.MaxLine}}, opts.Sources...)
	}
	for i := range opts.Sources {
		if opts.Sources[i].MaxLine <= 0 {
			opts.Sources[i].MaxLine = DefaultMaxLine
		}
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Tailer{opts: opts, sink: sink, ckpts: ckpts, log: opts.Logger, files: map[ring.FileID]*followed{}, finished: map[ring.FileID]savedCheckpoint{}}
}

// Stats counts what the tailer did since it started.
type Stats struct {
	Lines     uint64 // lines handed to the sink
	Truncated uint64 // of them, cut at their source's MaxLine
	LostFiles uint64 // files removed, truncated or replaced while the agent was stopped before they were read to their end
}

// Stats returns the counters; safe to call from any goroutine.
func (t *Tailer) Stats() Stats {
	return Stats{Lines: t.lines.Load(), Truncated: t.truncated.Load(), LostFiles: t.lost.Load()}
}

// Lines is how many lines were handed to the sink.
func (t *Tailer) Lines() uint64 { return t.lines.Load() }

// Name is the collector's name in logs and status.
func (t *Tailer) Name() string { return "logtail" }

// Run follows the files until ctx ends.
func (t *Tailer) Run(ctx context.Context) error {
	if err := t.loadCheckpoints(); err != nil {
		return err
	}
	defer t.closeAll()
	// Polling backs off (doubling up to 8 x Poll, at most 2s) while no file
	// grows, and is back at Poll as soon as one does: an idle agent does not
	// wake up four times a second.
	idleMax := max(t.opts.Poll, min(8*t.opts.Poll, 2*time.Second))
	interval := t.opts.Poll
	poll := time.NewTimer(interval)
	defer poll.Stop()
	rescan := time.NewTicker(t.opts.Rescan)
	defer rescan.Stop()
	save := time.NewTicker(t.opts.SaveEvery)
	defer save.Stop()
	t.scan()
	t.poll()
	for {
		select {
		case <-ctx.Done():
			t.save()
			return nil
		case <-poll.C:
			before := t.readN
			t.poll()
			if t.readN != before {
				interval = t.opts.Poll
			} else {
				interval = min(2*interval, idleMax)
			}
			poll.Reset(interval)
		case <-rescan.C:
			t.scan()
		case <-save.C:
			t.save()
		}
	}
}

// loadCheckpoints takes, per file, the furthest of the ring's checkpoints
// and the checkpoint file's.
func (t *Tailer) loadCheckpoints() error {
	t.start = map[ring.FileID]ring.Checkpoint{}
	t.sizes = map[ring.FileID]int64{}
	t.heads = map[ring.FileID]head{}
	t.finished = map[ring.FileID]savedCheckpoint{}
	merge := func(c ring.Checkpoint) {
		if old, ok := t.start[c.ID()]; !ok || c.After(old) {
			t.start[c.ID()] = c
		}
	}
	inRing := map[ring.FileID]bool{}
	if t.ckpts != nil {
		for _, c := range t.ckpts.Checkpoints() {
			merge(c)
			inRing[c.ID()] = true
		}
	}
	if t.opts.CheckpointPath != "" {
		b, err := os.ReadFile(t.opts.CheckpointPath)
		switch {
		case err == nil:
			var cs []savedCheckpoint
			if err := json.Unmarshal(b, &cs); err != nil {
				t.log.Warn("checkpoint file unreadable, using the ring's checkpoints", "path", t.opts.CheckpointPath, "err", err)
			}
			for _, c := range cs {
				if c.HeadLen > 0 {
					t.heads[c.ID()] = head{c.HeadLen, c.HeadSum}
				}
				if !c.Finished {
					merge(c.Checkpoint)
					if c.Size > 0 {
						t.sizes[c.ID()] = c.Size
					}
				} else if inRing[c.ID()] {
					// Still in undelivered ring entries: remember that
					// it was read to its end.
					t.finished[c.ID()] = c
				}
			}
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("read checkpoints %s: %w", t.opts.CheckpointPath, err)
		}
	}
	return nil
}

// candidate is a file a scan found and does not follow yet.
type candidate struct {
	path    string
	id      ring.FileID
	size    int64
	maxLine int
	matched bool // by a glob; else found by identity beside them
}

// scan matches the globs: new files are followed, files no longer matched
// are marked gone. The first scan also resumes files rotated while the
// agent was stopped.
func (t *Tailer) scan() {
	seen := map[ring.FileID]bool{}
	var cands []candidate
	for _, m := range t.match() {
		fi, err := os.Stat(m.path)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		id, err := fileID(fi)
		if err != nil {
			continue
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		if f, ok := t.files[id]; ok {
			f.path = m.path // renamed but still matched (app.log -> app.log.1)
			f.gone, f.idle = false, 0
			f.maxLine = m.maxLine
			continue
		}
		cands = append(cands, candidate{path: m.path, id: id, size: fi.Size(), maxLine: m.maxLine, matched: true})
	}
	if t.start != nil {
		cands = append(cands, t.rotatedWhileStopped(seen)...)
		// Files with a checkpoint are older than new ones: finish them first.
		sort.SliceStable(cands, func(i, j int) bool {
			_, ci := t.start[cands[i].id]
			_, cj := t.start[cands[j].id]
			return ci && !cj
		})
	}
	for _, c := range cands {
		t.open(c)
	}
	if len(cands) > 0 {
		t.save() // the new files' beginnings, at once: see savedCheckpoint
	}
	t.start = nil
	for id, f := range t.files {
		if !seen[id] && !f.gone {
			f.gone = true
			t.log.Info("log file rotated away or removed, finishing it", "path", f.path)
		}
	}
}

type match struct {
	path    string
	maxLine int
}

// match returns every path the globs match, sorted, with the largest
// MaxLine of the sources matching it.
func (t *Tailer) match() []match {
	byPath := map[string]int{}
	for _, src := range t.opts.Sources {
		for _, g := range src.Globs {
			m, err := filepath.Glob(g)
			if err != nil {
				t.log.Error("bad glob", "glob", g, "err", err)
				continue
			}
			for _, p := range m {
				byPath[p] = max(byPath[p], src.MaxLine)
			}
		}
	}
	out := make([]match, 0, len(byPath))
	for p, n := range byPath {
		out = append(out, match{p, n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

func (t *Tailer) open(c candidate) {
	fh, err := os.Open(c.path)
	if err != nil {
		t.errors.Add(1)
		t.log.Warn("open log file", "path", c.path, "err", err)
		return
	}
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return
	}
	if got, err := fileID(fi); err != nil || got != c.id {
		fh.Close() // replaced between stat and open: next scan
		return
	}
	f := &followed{id: c.id, path: c.path, f: fh, maxLine: c.maxLine, gone: !c.matched, size: fi.Size()}
	if ck, ok := t.start[c.id]; ok {
		f.gen = ck.Gen
		h, hasHead := t.heads[c.id]
		switch {
		case hasHead && c.size >= int64(h.Len) && t.headDiffers(fh, h):
			// The checkpointed file was deleted and this new one got its
			// inode: a file of its own, read from 0.
			f.gen++
			t.lostWhileStopped("removed (a new file got its inode)", ck, true)
		case c.size >= ck.Offset && (!hasHead || c.size >= int64(h.Len)):
			f.offset = ck.Offset
			if ck.Path != c.path && ck.Path != "" && c.size > ck.Offset {
				t.log.Info(fmt.Sprintf("resuming %s rotated to %s while stopped at offset %d", filepath.Base(ck.Path), filepath.Base(c.path), ck.Offset),
					"path", ck.Path, "rotated_to", c.path, "offset", ck.Offset, "unread_bytes", c.size-ck.Offset)
			}
		default: // truncated (copytruncate) while stopped
			f.gen++
			t.lostWhileStopped("truncated", ck, false)
		}
		delete(t.start, c.id)
	}
	delete(t.finished, c.id) // followed again (or its inode reused): finished anew later
	t.updateHead(f)
	t.files[c.id] = f
	t.order = append(t.order, c.id)
	t.log.Info("following log file", "path", c.path, "offset", f.offset)
}

// poll reads every followed file to EOF, oldest-seen first.
func (t *Tailer) poll() {
	rotated := false
	kept := t.order[:0]
	var forget []ring.FileID
	for _, id := range t.order {
		f := t.files[id]
		n := t.read(f)
		if f.gone {
			if n == 0 {
				f.idle++
			}
			if f.idle >= 2 {
				t.finish(f)
				delete(t.files, id)
				forget = append(forget, id)
				continue
			}
		} else if fi, err := os.Stat(f.path); err != nil {
			rotated = true
		} else if got, err := fileID(fi); err == nil && got != id {
			rotated = true
		}
		kept = append(kept, id)
	}
	t.order = kept
	if len(forget) > 0 {
		if t.ckpts != nil {
			t.ckpts.ForgetCheckpoints(forget)
		}
		t.save() // the finished records, at once: see savedCheckpoint
	}
	if rotated {
		t.scan()
		t.poll()
	}
}

// read consumes new bytes of f and returns how many it read.
func (t *Tailer) read(f *followed) int {
	fi, err := f.f.Stat()
	if err != nil {
		return 0
	}
	f.size = fi.Size()
	if f.headLen < headMax {
		t.updateHead(f)
	}
	pos := f.offset + int64(len(f.partial)) + f.skipped
	if fi.Size() < pos {
		t.log.Info("log file truncated, reading it from the start", "path", f.path, "size", fi.Size(), "offset", pos)
		f.gen++
		f.offset, f.partial, f.long, f.skipped, pos = 0, f.partial[:0], false, 0, 0
	}
	if t.buf == nil {
		t.buf = make([]byte, 32<<10)
	}
	total := 0
	for {
		n, err := f.f.ReadAt(t.buf, pos)
		if n > 0 {
			total += n
			t.readN += int64(n)
			pos += int64(n)
			t.consume(f, t.buf[:n])
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.errors.Add(1)
				t.log.Warn("read log file", "path", f.path, "err", err)
			}
			return total
		}
	}
}

// consume takes bytes read from f after what it holds.
func (t *Tailer) consume(f *followed, b []byte) {
	if f.long {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			f.skipped += int64(len(b))
			return
		}
		f.skipped += int64(i + 1)
		t.emitLong(f)
		b = b[i+1:]
	}
	f.partial = append(f.partial, b...)
	t.emitLines(f)
}

// emitLines hands out every complete line of f.partial; a line that grows
// beyond f.maxLine without a newline turns f long.
func (t *Tailer) emitLines(f *followed) {
	for {
		i := bytes.IndexByte(f.partial, '\n')
		if i < 0 {
			if len(f.partial) > f.maxLine {
				f.long, f.skipped = true, int64(len(f.partial)-f.maxLine)
				f.partial = f.partial[:f.maxLine]
				return
			}
			if len(f.partial) == 0 {
				f.partial = nil // let a burst's buffer go
			}
			return
		}
		line, cut := f.partial[:i], false
		if len(line) > f.maxLine {
			line, cut = line[:f.maxLine], true
		}
		t.emit(f, line, int64(i+1), cut)
		f.partial = f.partial[i+1:]
	}
}

// emitLong hands out the kept head of a long line whose newline was read.
func (t *Tailer) emitLong(f *followed) {
	t.emit(f, f.partial, int64(len(f.partial))+f.skipped, true)
	f.partial, f.long, f.skipped = nil, false, 0
}

// emit sends one line that took n bytes of the file (cut: it was longer).
func (t *Tailer) emit(f *followed, line []byte, n int64, cut bool) {
	start := f.offset
	f.offset += n
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if cut {
		line = runeStart(line)
	}
	doc := logLine{
		Base: t.opts.Source.NewBase(t.opts.Clock.Now(), ecs.Event{
			Kind: "event", Category: []string{"host"}, Type: []string{"info"},
			Action: "log-line", Dataset: "log", Module: "logfile",
		}),
		Log:     logField{File: logFile{Path: f.path}, Offset: start},
		Message: string(line),
	}
	var ev []byte
	for {
		if cut {
			doc.Log.Flags = []string{"truncated"}
		}
		var err error
		if ev, err = json.Marshal(doc); err != nil {
			return
		}
		if len(ev) <= maxEvent {
			break
		}
		// Escapes made it too big for a frame: keep what fits.
		keep := len(doc.Message) * (maxEvent - 4<<10) / len(ev)
		doc.Message, cut = string(runeStart([]byte(doc.Message[:keep]))), true
	}
	if cut {
		t.truncated.Add(1)
		lvl := slog.LevelDebug
		if !f.cutSaid {
			lvl, f.cutSaid = slog.LevelInfo, true
		}
		t.log.Log(context.Background(), lvl, "log line longer than max_line_bytes, truncated (logs.truncated_lines in the status counts them; raise logs[].max_line_bytes to keep such lines whole)",
			"path", f.path, "offset", start, "bytes", n, "kept", len(doc.Message))
	}
	ck := ring.Checkpoint{Dev: f.id.Dev, Ino: f.id.Ino, Gen: f.gen, Offset: f.offset, Path: f.path}
	if err := t.sink.Add(ev, &ck); err != nil {
		t.errors.Add(1)
		t.log.Error("queue log line", "path", f.path, "err", err)
	}
	t.lines.Add(1)
}

// runeStart drops a UTF-8 sequence cut short at the end of b.
func runeStart(b []byte) []byte {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i]
			}
			break
		}
	}
	return b
}

// finish hands out a gone file's unterminated last line and closes it.
func (t *Tailer) finish(f *followed) {
	switch {
	case f.long:
		t.emitLong(f)
	case len(f.partial) > 0:
		t.emit(f, f.partial, int64(len(f.partial)), false)
		f.partial = nil
	}
	f.f.Close()
	t.rememberFinished(f)
	t.log.Info("finished log file", "path", f.path, "offset", f.offset)
}

func (t *Tailer) closeAll() {
	for _, f := range t.files {
		f.f.Close()
	}
	t.files = map[ring.FileID]*followed{}
	t.order = nil
}

// save writes the ring's checkpoints of followed files, with their sizes,
// and the finished files to CheckpointPath.
func (t *Tailer) save() {
	if t.opts.CheckpointPath == "" || t.ckpts == nil {
		return
	}
	inRing := map[ring.FileID]ring.Checkpoint{}
	for _, c := range t.ckpts.Checkpoints() {
		inRing[c.ID()] = c
	}
	var cs []savedCheckpoint
	for id, f := range t.files {
		c, ok := inRing[id]
		if !ok {
			// Nothing of it in the ring yet: offset 0, never ahead of the ring.
			c = ring.Checkpoint{Dev: id.Dev, Ino: id.Ino, Path: f.path}
		}
		cs = append(cs, savedCheckpoint{Checkpoint: c, Size: f.size, HeadLen: f.headLen, HeadSum: f.headSum})
	}
	for _, c := range t.finished {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Path != cs[j].Path {
			return cs[i].Path < cs[j].Path
		}
		return cs[i].Ino < cs[j].Ino
	})
	b, err := json.MarshalIndent(cs, "", "  ")
	if err != nil {
		return
	}
	if bytes.Equal(b, t.saved) {
		return // unchanged: no write, no fsync
	}
	if err := atomicfile.Write(t.opts.CheckpointPath, b, 0o600); err != nil {
		t.log.Warn("save checkpoints", "err", err)
		return
	}
	t.saved = b
}

type logLine struct {
	ecs.Base
	Log     logField `json:"log"`
	Message string   `json:"message"`
}

type logField struct {
	File   logFile  `json:"file"`
	Offset int64    `json:"offset"`
	Flags  []string `json:"flags,omitempty"` // ECS log.flags: "truncated"
}

type logFile struct {
	Path string `json:"path"`
}
