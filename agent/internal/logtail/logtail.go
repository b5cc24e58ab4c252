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

// Options configures a Tailer.
type Options struct {
	Globs          []string
	CheckpointPath string // <data_dir>/checkpoints.json
	Source         ecs.Source
	Poll           time.Duration // read followed files; default 250ms
	Rescan         time.Duration // match globs again; default 5s
	SaveEvery      time.Duration // write CheckpointPath; default 5s
	MaxLine        int           // longer lines are cut; default 64 KiB
	Now            func() time.Time
	Logger         *slog.Logger
}

type followed struct {
	id      ring.FileID
	path    string
	f       *os.File
	gen     uint64
	offset  int64  // just past the last complete line handed out
	partial []byte // bytes read after offset, no newline yet
	gone    bool   // no longer matched by the globs
	idle    int    // polls without data since gone
}

// Tailer follows the files. Run owns all its state.
type Tailer struct {
	opts  Options
	sink  Sink
	ckpts Checkpoints
	log   *slog.Logger

	files  map[ring.FileID]*followed
	order  []ring.FileID // first seen first: an old file is finished before its successor
	start  map[ring.FileID]ring.Checkpoint
	buf    []byte
	saved  []byte // the checkpoint file as last written
	readN  int64  // bytes read so far (poll backs off while it stays put)
	lines  atomic.Uint64
	errors atomic.Uint64
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
	if opts.MaxLine <= 0 {
		opts.MaxLine = 64 << 10
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Tailer{opts: opts, sink: sink, ckpts: ckpts, log: opts.Logger, files: map[ring.FileID]*followed{}}
}

// Lines is how many lines were handed to the sink.
func (t *Tailer) Lines() uint64 { return t.lines.Load() }

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
	merge := func(c ring.Checkpoint) {
		if old, ok := t.start[c.ID()]; !ok || c.After(old) {
			t.start[c.ID()] = c
		}
	}
	if t.ckpts != nil {
		for _, c := range t.ckpts.Checkpoints() {
			merge(c)
		}
	}
	if t.opts.CheckpointPath != "" {
		b, err := os.ReadFile(t.opts.CheckpointPath)
		switch {
		case err == nil:
			var cs []ring.Checkpoint
			if err := json.Unmarshal(b, &cs); err != nil {
				t.log.Warn("checkpoint file unreadable, using the ring's checkpoints", "path", t.opts.CheckpointPath, "err", err)
			}
			for _, c := range cs {
				merge(c)
			}
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("read checkpoints %s: %w", t.opts.CheckpointPath, err)
		}
	}
	return nil
}

// scan matches the globs: new files are followed, files no longer matched
// are marked gone.
func (t *Tailer) scan() {
	seen := map[ring.FileID]bool{}
	var paths []string
	for _, g := range t.opts.Globs {
		m, err := filepath.Glob(g)
		if err != nil {
			t.log.Error("bad glob", "glob", g, "err", err)
			continue
		}
		paths = append(paths, m...)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fi, err := os.Stat(p)
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
			f.path = p // renamed but still matched (app.log -> app.log.1)
			f.gone, f.idle = false, 0
			continue
		}
		t.open(p, id, fi.Size())
	}
	for id, f := range t.files {
		if !seen[id] && !f.gone {
			f.gone = true
			t.log.Info("log file rotated away or removed, finishing it", "path", f.path)
		}
	}
}

func (t *Tailer) open(path string, id ring.FileID, size int64) {
	fh, err := os.Open(path)
	if err != nil {
		t.errors.Add(1)
		t.log.Warn("open log file", "path", path, "err", err)
		return
	}
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return
	}
	if got, err := fileID(fi); err != nil || got != id {
		fh.Close() // replaced between stat and open: next scan
		return
	}
	f := &followed{id: id, path: path, f: fh}
	if c, ok := t.start[id]; ok {
		f.gen = c.Gen
		if size >= c.Offset {
			f.offset = c.Offset
		} else {
			f.gen++
			t.log.Info("log file shrank while stopped, reading it from the start", "path", path)
		}
		delete(t.start, id)
	}
	t.files[id] = f
	t.order = append(t.order, id)
	t.log.Info("following log file", "path", path, "offset", f.offset)
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
	if len(forget) > 0 && t.ckpts != nil {
		t.ckpts.ForgetCheckpoints(forget)
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
	pos := f.offset + int64(len(f.partial))
	if fi.Size() < pos {
		t.log.Info("log file truncated, reading it from the start", "path", f.path, "size", fi.Size(), "offset", pos)
		f.gen++
		f.offset, f.partial, pos = 0, f.partial[:0], 0
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
			f.partial = append(f.partial, t.buf[:n]...)
			t.emitLines(f)
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

// emitLines hands out every complete line of f.partial.
func (t *Tailer) emitLines(f *followed) {
	for {
		i := bytes.IndexByte(f.partial, '\n')
		if i < 0 {
			if len(f.partial) >= t.opts.MaxLine {
				t.emit(f, f.partial[:t.opts.MaxLine], t.opts.MaxLine)
				continue
			}
			if len(f.partial) == 0 {
				f.partial = nil // let a burst's buffer go
			}
			return
		}
		line := f.partial[:i]
		if len(line) > t.opts.MaxLine {
			line = line[:t.opts.MaxLine]
		}
		t.emit(f, line, i+1)
	}
}

// emit sends one line and consumes n bytes.
func (t *Tailer) emit(f *followed, line []byte, n int) {
	start := f.offset
	f.offset += int64(n)
	f.partial = f.partial[n:]
	line = bytes.TrimSuffix(line, []byte{'\r'})
	ev, err := json.Marshal(logLine{
		Base: t.opts.Source.NewBase(t.opts.Now(), ecs.Event{
			Kind: "event", Category: []string{"host"}, Type: []string{"info"},
			Action: "log-line", Dataset: "log", Module: "logfile",
		}),
		Log:     logField{File: logFile{Path: f.path}, Offset: start},
		Message: string(line),
	})
	if err != nil {
		return
	}
	ck := ring.Checkpoint{Dev: f.id.Dev, Ino: f.id.Ino, Gen: f.gen, Offset: f.offset, Path: f.path}
	if err := t.sink.Add(ev, &ck); err != nil {
		t.errors.Add(1)
		t.log.Error("queue log line", "path", f.path, "err", err)
	}
	t.lines.Add(1)
}

// finish hands out a gone file's unterminated last line and closes it.
func (t *Tailer) finish(f *followed) {
	if len(f.partial) > 0 {
		t.emit(f, f.partial, len(f.partial))
	}
	f.f.Close()
	t.log.Info("finished log file", "path", f.path, "offset", f.offset)
}

func (t *Tailer) closeAll() {
	for _, f := range t.files {
		f.f.Close()
	}
	t.files = map[ring.FileID]*followed{}
	t.order = nil
}

// save writes the ring's checkpoints of followed files to CheckpointPath.
func (t *Tailer) save() {
	if t.opts.CheckpointPath == "" || t.ckpts == nil {
		return
	}
	var cs []ring.Checkpoint
	for _, c := range t.ckpts.Checkpoints() {
		if _, ok := t.files[c.ID()]; ok {
			cs = append(cs, c)
		}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Path < cs[j].Path })
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
	File   logFile `json:"file"`
	Offset int64   `json:"offset"`
}

type logFile struct {
	Path string `json:"path"`
}
