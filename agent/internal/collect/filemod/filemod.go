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
	"time"

	"github.com/jonboulle/clockwork"
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
	Clock  clockwork.Clock
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
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
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

// Name is the collector's name in logs and status.
func (c *Collector) Name() string { return "filemod" }

// Run marks the directories and reports events until ctx ends.
func (c *Collector) Run(ctx context.Context) error {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_REPORT_DFID_NAME, unix.O_RDONLY|unix.O_LARGEFILE)
	if err != nil {
		return fmt.Errorf("filemod: fanotify_init: %w", err)
	}
	defer unix.Close(fd)
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
	// The fanotify fd stays out of the Go netpoller: there, every event
	// would wake the process even while the collector sleeps until its
	// tick. A blocking poll(2) waits for the first event only, and an
	// eventfd ends it when ctx does.
	stopFd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("filemod: eventfd: %w", err)
	}
	defer unix.Close(stopFd)
	stop := context.AfterFunc(ctx, func() { unix.Write(stopFd, []byte{1, 0, 0, 0, 0, 0, 0, 0}) })
	defer stop()
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
	busy := false
	for {
		if !busy {
			if err := waitReadable(fd, stopFd); err != nil {
				return fmt.Errorf("filemod: wait for fanotify: %w", err)
			}
		}
		// As the eBPF collectors: take everything queued by the tick at
		// once, and keep reading on ticks while events keep coming.
		if c.opts.DrainEvery > 0 && ctx.Err() == nil {
			collect.SleepUntil(ctx, collect.NextTick(time.Now(), c.opts.DrainEvery))
		}
		n, err := readQueued(fd, buf, handleBuf)
		if err != nil {
			return fmt.Errorf("filemod: read fanotify: %w", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		busy = c.opts.DrainEvery > 0 && n > 0
	}
}

// waitReadable blocks in poll(2) until fd is readable or stopFd is.
func waitReadable(fd, stopFd int) error {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(stopFd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// readQueued hands what the fanotify queue holds to handle, without
// waiting, and returns how many bytes it read.
func readQueued(fd int, buf []byte, handle func([]byte)) (int, error) {
	total := 0
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return total, nil
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return total, err
		case n <= 0:
			return total, nil
		}
		handle(buf[:n])
		total += n
	}
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
		Base: c.opts.Source.NewBase(c.opts.Clock.Now(), ecs.Event{
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
