package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/gatehouse/gatehouse/agent/internal/collect"
	"github.com/gatehouse/gatehouse/agent/internal/ecs"
	"github.com/gatehouse/gatehouse/agent/internal/logtail"
	"github.com/gatehouse/gatehouse/agent/internal/ring"
)

// Sources.
const (
	SourceAuto     = "auto"
	SourceFile     = "file"
	SourceJournald = "journald"
)

// Options configures a Collector.
type Options struct {
	Source     ecs.Source
	Sink       collect.Sink
	From       string   // auto, file or journald
	Paths      []string // auth log files (globs)
	DataDir    string   // checkpoint and journald cursor live here
	Ring       logtail.Checkpoints
	Journalctl string        // default "journalctl"
	Poll       time.Duration // file poll; default logtail's
	Clock      clockwork.Clock
	Logger     *slog.Logger
}

// Collector reads authentication events from the source the host has.
type Collector struct {
	opts                    Options
	log                     *slog.Logger
	events, lines, sinkErrs atomic.Uint64
}

// New returns a Collector; it starts nothing.
func New(opts Options) *Collector {
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Journalctl == "" {
		opts.Journalctl = "journalctl"
	}
	if opts.From == "" {
		opts.From = SourceAuto
	}
	return &Collector{opts: opts, log: opts.Logger}
}

// Events is how many authentication events were queued.
func (c *Collector) Events() uint64 { return c.events.Load() }

// Pick chooses the source: the auth log file when one of paths exists,
// else journald when journalctl is there, else "".
func Pick(from string, paths []string, journalctl string) string {
	if from != SourceAuto {
		return from
	}
	for _, p := range paths {
		if m, _ := filepath.Glob(p); len(m) > 0 {
			return SourceFile
		}
	}
	if _, err := exec.LookPath(journalctl); err == nil {
		return SourceJournald
	}
	return ""
}

// Name is the collector's name in logs and status.
func (c *Collector) Name() string { return "auth" }

// Run reads until ctx ends.
func (c *Collector) Run(ctx context.Context) error {
	switch src := Pick(c.opts.From, c.opts.Paths, c.opts.Journalctl); src {
	case SourceFile:
		c.log.Info("auth collector reading files", "paths", c.opts.Paths)
		t := logtail.New(logtail.Options{
			Globs: c.opts.Paths, CheckpointPath: c.checkpointPath(), Source: c.opts.Source,
			Poll: c.opts.Poll, Clock: c.opts.Clock, Logger: c.log,
		}, lineSink{c}, c.opts.Ring)
		return t.Run(ctx)
	case SourceJournald:
		c.log.Info("auth collector reading journald")
		return c.runJournal(ctx)
	default:
		c.log.Warn("auth collector: no auth log file and no journalctl: authentication events not collected")
		<-ctx.Done()
		return nil
	}
}

func (c *Collector) checkpointPath() string {
	if c.opts.DataDir == "" {
		return ""
	}
	return c.opts.DataDir + "/auth-checkpoints.json"
}

// lineSink receives logtail's log-line events and keeps the
// authentication ones, with their checkpoints.
type lineSink struct{ c *Collector }

func (s lineSink) Add(ev []byte, ck *ring.Checkpoint) error {
	var l struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(ev, &l); err != nil {
		return nil
	}
	s.c.lines.Add(1)
	r, ok := ParseLine(l.Message, s.c.opts.Clock.Now())
	if !ok {
		return nil
	}
	return s.c.emit(r, ck)
}

func (c *Collector) emit(r Record, ck *ring.Checkpoint) error {
	ev, err := json.Marshal(c.Event(r))
	if err != nil {
		return fmt.Errorf("auth event: %w", err)
	}
	if err := c.opts.Sink.Add(ev, ck); err != nil {
		c.sinkErrs.Add(1)
		return err
	}
	c.events.Add(1)
	return nil
}

// Event is the ECS document of an authentication event.
type Event struct {
	ecs.Base
	User    ecs.User      `json:"user"`
	Source  *ecs.Endpoint `json:"source,omitempty"`
	Process *ecs.Process  `json:"process,omitempty"`
	Auth    *authField    `json:"authentication,omitempty"`
	Related ecs.Related   `json:"related"`
}

type authField struct {
	Method string `json:"method,omitempty"`
}

// Event renders r.
func (c *Collector) Event(r Record) Event {
	t := r.Time
	if t.IsZero() {
		t = c.opts.Clock.Now()
	}
	e := ecs.Event{
		Kind: "event", Category: []string{"authentication"}, Type: []string{"info"},
		Action: r.Action, Outcome: r.Outcome, Dataset: "auth", Module: "auth",
		Code: "6", Provider: r.Program,
	}
	switch r.Action {
	case "ssh-login", "ssh-login-failed", "ssh-invalid-user":
		e.Category, e.Type = []string{"authentication", "session"}, []string{"start"}
	case "sudo", "sudo-failed", "su", "su-failed":
		e.Code = "7"
		e.Category, e.Type = []string{"authentication", "iam"}, []string{"change"}
	}
	ev := Event{Base: c.opts.Source.NewBase(t, e), User: ecs.User{Name: r.User}}
	ev.Related.User = []string{r.User}
	if r.TargetUser != "" {
		ev.User.Target = &ecs.Target{Name: r.TargetUser}
		ev.Related.User = append(ev.Related.User, r.TargetUser)
	}
	if r.SourceIP != "" {
		ev.Source = &ecs.Endpoint{IP: r.SourceIP, Port: uint16(r.SourcePort)}
		ev.Related.IP = []string{r.SourceIP}
	}
	if r.PID != 0 || r.Command != "" {
		ev.Process = &ecs.Process{PID: uint32(r.PID), Name: r.Program, CommandLine: r.Command}
	}
	if r.Method != "" {
		ev.Auth = &authField{Method: r.Method}
	}
	return ev
}

// runJournal follows `journalctl -f -o json` for sshd, sudo and su,
// resuming after the cursor it saved last time.
func (c *Collector) runJournal(ctx context.Context) error {
	args := []string{"--follow", "--output=json", "--no-pager",
		"SYSLOG_IDENTIFIER=sshd", "SYSLOG_IDENTIFIER=sshd-session", "SYSLOG_IDENTIFIER=sudo", "SYSLOG_IDENTIFIER=su"}
	cursorPath := ""
	if c.opts.DataDir != "" {
		cursorPath = c.opts.DataDir + "/auth-journal.cursor"
	}
	if b, err := os.ReadFile(cursorPath); err == nil && len(b) > 0 {
		args = append(args, "--after-cursor="+string(b))
	} else {
		args = append(args, "--since=now")
	}
	j := &journal{c: c, cursorPath: cursorPath}
	err := j.follow(ctx, c.opts.Journalctl, args)
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return nil
	}
	return err
}

// journalEntry is what we read of journalctl's JSON (values may be strings
// or byte arrays; only strings are used).
type journalEntry struct {
	Cursor     string          `json:"__CURSOR"`
	RealtimeUS string          `json:"__REALTIME_TIMESTAMP"`
	Identifier string          `json:"SYSLOG_IDENTIFIER"`
	PID        string          `json:"_PID"`
	Message    json.RawMessage `json:"MESSAGE"`
}

// ParseJournal decodes one journalctl JSON line.
func ParseJournal(line []byte) (Record, string, bool) {
	var e journalEntry
	if err := json.Unmarshal(line, &e); err != nil {
		return Record{}, "", false
	}
	var msg string
	if err := json.Unmarshal(e.Message, &msg); err != nil {
		return Record{}, e.Cursor, false
	}
	pid, _ := strconv.Atoi(e.PID)
	r, ok := ParseMessage(e.Identifier, pid, msg)
	if ok {
		if us, err := strconv.ParseInt(e.RealtimeUS, 10, 64); err == nil {
			r.Time = time.UnixMicro(us)
		}
	}
	return r, e.Cursor, ok
}
