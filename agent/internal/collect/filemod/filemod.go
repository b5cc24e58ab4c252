// Package filemod reports file creation, modification (a file opened for
// writing is closed), deletion and rename in configured directories with
// fanotify (FAN_REPORT_DFID_NAME, so no fd per event and the acting pid),
// as ECS file events.
//
// Directories are watched themselves, not recursively.
package filemod

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gatehouse/gatehouse/agent/internal/collect"
	"github.com/gatehouse/gatehouse/agent/internal/ecs"
)

// Options configures a Collector.
type Options struct {
	Source ecs.Source
	Sink   collect.Sink
	Paths  []string // directories to watch
	Proc   string   // default /proc
	Now    func() time.Time
	Logger *slog.Logger
	// DrainEvery paces reading the kernel's events: at most one pass per
	// tick (see collect.ReadRecords); 0 reads each at once.
	DrainEvery time.Duration
}

// Collector is the file modification collector.
type Collector struct {
	opts                          Options
	log                           *slog.Logger
	ready                         chan struct{}
	events, decodeErrs, overflows atomic.Uint64
	self                          int32
	exes                          *collect.ExeCache
}

// New returns a Collector; it starts nothing.
func New(opts Options) *Collector {
	if opts.Proc == "" {
		opts.Proc = "/proc"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Collector{opts: opts, log: opts.Logger, ready: make(chan struct{}), self: int32(os.Getpid()), exes: &collect.ExeCache{Proc: opts.Proc}}
}

// Ready is closed once the directories are marked.
func (c *Collector) Ready() <-chan struct{} { return c.ready }

// Events is how many events were queued.
func (c *Collector) Events() uint64 { return c.events.Load() }

const mask = unix.FAN_CREATE | unix.FAN_DELETE | unix.FAN_RENAME | unix.FAN_CLOSE_WRITE |
	unix.FAN_EVENT_ON_CHILD | unix.FAN_ONDIR

// Run marks the directories and reports events until ctx ends.
func (c *Collector) Run(ctx context.Context) error {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_REPORT_DFID_NAME, unix.O_RDONLY|unix.O_LARGEFILE)
	if err != nil {
		return fmt.Errorf("filemod: fanotify_init: %w", err)
	}
	f := os.NewFile(uintptr(fd), "fanotify")
	defer f.Close()
	dirs := map[string]string{}
	for _, p := range c.opts.Paths {
		key, err := dirKey(p)
		if err != nil {
			c.log.Warn("filemod: cannot watch directory", "path", p, "err", err)
			continue
		}
		if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR, mask, unix.AT_FDCWD, p); err != nil {
			c.log.Warn("filemod: cannot watch directory", "path", p, "err", err)
			continue
		}
		dirs[key] = p
	}
	c.log.Info("filemod collector running", "dirs", len(dirs))
	close(c.ready)
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	raw, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("filemod: fanotify fd: %w", err)
	}
	buf := make([]byte, 16<<10)
	handleBuf := func(b []byte) {
		evs, err := decodeEvents(b)
		if err != nil {
			c.decodeErrs.Add(1)
			c.log.Warn("filemod: bad fanotify record", "err", err)
		}
		for _, e := range evs {
			c.handle(dirs, e)
		}
	}
	for {
		// Park until the first event, then (as the eBPF collectors) wait
		// for the drain tick and take everything queued by then at once.
		n, err := f.Read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("filemod: read fanotify: %w", err)
		}
		handleBuf(buf[:n])
		if c.opts.DrainEvery > 0 {
			collect.SleepUntil(ctx, collect.NextTick(time.Now(), c.opts.DrainEvery))
		}
		for {
			n, err := readQueued(raw, buf)
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
					return nil
				}
				return fmt.Errorf("filemod: read fanotify: %w", err)
			}
			if n == 0 {
				break
			}
			handleBuf(buf[:n])
		}
	}
}

// readQueued reads what the fanotify queue holds without parking: 0 when
// it is empty.
func readQueued(raw syscall.RawConn, buf []byte) (int, error) {
	var n int
	var rerr error
	err := raw.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), buf)
		return true // never wait for more
	})
	if err != nil {
		return 0, err
	}
	if errors.Is(rerr, unix.EAGAIN) || errors.Is(rerr, unix.EINTR) {
		return 0, nil
	}
	if rerr != nil {
		return 0, rerr
	}
	return n, nil
}

// dirKey is the fanotify handle key of directory p.
func dirKey(p string) (string, error) {
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, p, 0)
	if err != nil {
		return "", fmt.Errorf("name_to_handle_at %s: %w", p, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return "", fmt.Errorf("statfs %s: %w", p, err)
	}
	fsid := make([]byte, 8)
	binary.LittleEndian.PutUint32(fsid[0:], uint32(st.Fsid.Val[0]))
	binary.LittleEndian.PutUint32(fsid[4:], uint32(st.Fsid.Val[1]))
	return handleKey(fsid, h.Type(), h.Bytes()), nil
}

// Event is the ECS document of a file event.
type Event struct {
	ecs.Base
	File    ecs.File     `json:"file"`
	Process *ecs.Process `json:"process,omitempty"`
	Rename  *renameField `json:"gatehouse,omitempty"`
}

type renameField struct {
	OldFile ecs.File `json:"old_file"`
}

func (c *Collector) handle(dirs map[string]string, e rawEvent) {
	if e.Mask&unix.FAN_Q_OVERFLOW != 0 {
		c.overflows.Add(1)
		c.log.Warn("filemod: fanotify queue overflowed, events lost")
		return
	}
	path := func(kind uint8) (string, bool) {
		for _, f := range e.FIDs {
			if f.Kind == kind {
				d, ok := dirs[f.Handle]
				if !ok {
					return "", false
				}
				return filepath.Join(d, f.Name), true
			}
		}
		return "", false
	}
	if e.Mask&unix.FAN_RENAME != 0 {
		oldP, ok1 := path(infoOldDFIDName)
		newP, ok2 := path(infoNewDFIDName)
		if !ok1 && !ok2 {
			return
		}
		ev := c.event(e, newP, "rename", "file-renamed", "14")
		if ok1 {
			ev.Rename = &renameField{OldFile: fileOf(oldP)}
		}
		c.queue(ev)
		return
	}
	p, ok := path(infoDFIDName)
	if !ok {
		return
	}
	// The kernel merges events on the same name that were not read yet:
	// one record may say created, written and deleted.
	for _, k := range []struct {
		bit               uint64
		typ, action, code string
	}{
		{unix.FAN_CREATE, "creation", "file-created", "11"},
		{unix.FAN_CLOSE_WRITE, "change", "file-modified", "12"},
		{unix.FAN_DELETE, "deletion", "file-deleted", "13"},
	} {
		if e.Mask&k.bit != 0 {
			c.queue(c.event(e, p, k.typ, k.action, k.code))
		}
	}
}

func (c *Collector) queue(ev Event) {
	b, err := json.Marshal(ev)
	if err != nil {
		return
	}
	if err := c.opts.Sink.Add(b, nil); err != nil {
		c.log.Error("queue file event", "err", err)
		return
	}
	c.events.Add(1)
}

func fileOf(p string) ecs.File {
	return ecs.File{Path: p, Name: filepath.Base(p), Directory: filepath.Dir(p)}
}

func (c *Collector) event(e rawEvent, path, typ, action, code string) Event {
	ev := Event{
		Base: c.opts.Source.NewBase(c.opts.Now(), ecs.Event{
			Kind: "event", Category: []string{"file"}, Type: []string{typ},
			Action: action, Dataset: "filemod", Module: "filemod", Code: code, Provider: "gatehouse-agent",
		}),
		File: fileOf(path),
	}
	if e.PID > 0 {
		p := &ecs.Process{PID: uint32(e.PID)}
		if exe := c.exes.Exe(uint32(e.PID)); exe != "" {
			p.Executable, p.Name = exe, filepath.Base(exe)
		}
		ev.Process = p
	}
	return ev
}
