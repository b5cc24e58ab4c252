// Package actions runs the commands the cloud sends an agent (isolate,
// quarantine a file, terminate a process, retrieve a file or a support
// bundle, set the proxy, ...) and answers each with a CommandResult.
// Execution is idempotent by command id: results of done commands are kept
// in <data_dir>/actions-done.json, so a re-delivered command answers the
// same result without running again.
package actions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/agent/internal/isolate"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// Isolator is what the isolate actions need (an *isolate.Isolator).
type Isolator interface {
	Apply(ctx context.Context, p isolate.Policy) error
	Policy() isolate.Policy
}

// Deps are the executor's collaborators; only DataDir is required.
type Deps struct {
	DataDir  string // quarantine/, proxy.json and actions-done.json live here
	Isolator Isolator
	// ProxyChanged is called after set_proxy / clear_proxy changed
	// proxy.json (url "" when cleared), so the transport reconnects.
	ProxyChanged func(url string)
	// HeartbeatNow asks the transport to send a heartbeat at once.
	HeartbeatNow func()
	// Files of the support bundle; missing ones are listed in it as missing.
	LogFile    string
	ConfigFile string // secrets are redacted
	StatusFile string
	// MaxRetrieveBytes caps retrieve_file; default DefaultMaxRetrieve.
	MaxRetrieveBytes int64
	// KillWait bounds how long terminate_process waits for the process to
	// be gone; default 5s.
	KillWait time.Duration
	Now      func() time.Time
	Logger   *slog.Logger
}

// DefaultMaxRetrieve keeps a retrieved file, base64 in its JSON output,
// under the 1 MiB the cloud keeps of an action's output. Larger files need
// the chunked file transfer (a later issue).
const DefaultMaxRetrieve = 768 << 10

// Result is an executor's outcome.
type Result struct {
	OK     bool
	Reason string
	Output []byte
}

func fail(format string, a ...any) Result { return Result{Reason: fmt.Sprintf(format, a...)} }

// Executor runs commands one at a time.
type Executor struct {
	deps Deps
	log  *slog.Logger
	self int

	mu   sync.Mutex
	done *doneLog
}

// New checks deps; it starts nothing and reads nothing.
func New(deps Deps) (*Executor, error) {
	if deps.DataDir == "" {
		return nil, errors.New("actions: DataDir is required")
	}
	if deps.MaxRetrieveBytes <= 0 {
		deps.MaxRetrieveBytes = DefaultMaxRetrieve
	}
	if deps.KillWait <= 0 {
		deps.KillWait = 5 * time.Second
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	return &Executor{deps: deps, log: deps.Logger, self: os.Getpid(),
		done: &doneLog{path: filepath.Join(deps.DataDir, "actions-done.json")}}, nil
}

// Execute runs cmd, or returns the recorded result when a command with
// the same id already ran. It never panics on a bad payload: that is a
// failed result.
func (e *Executor) Execute(ctx context.Context, cmd *agentv1.Command) *agentv1.CommandResult {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := cmd.GetId()
	if id == "" {
		return &agentv1.CommandResult{Reason: "command without id"}
	}
	if r, ok := e.done.get(id); ok {
		e.log.Info("command already done: same result", "id", id, "type", cmd.GetType())
		return &agentv1.CommandResult{Id: id, Ok: r.OK, Reason: r.Reason, Output: r.Output}
	}
	r := e.run(ctx, cmd.GetType(), cmd.GetPayload())
	e.log.Info("command executed", "id", id, "type", cmd.GetType(), "ok", r.OK, "reason", r.Reason, "output_bytes", len(r.Output))
	if err := e.done.put(id, cmd.GetType(), r); err != nil {
		e.log.Error("record done command", "id", id, "err", err)
	}
	return &agentv1.CommandResult{Id: id, Ok: r.OK, Reason: r.Reason, Output: r.Output}
}

func (e *Executor) run(ctx context.Context, typ string, payload []byte) Result {
	switch typ {
	case TypeIsolate:
		cidrs, names, err := DecodeIsolate(payload)
		if err != nil {
			return fail("%v", err)
		}
		return e.isolate(ctx, true, cidrs, names, len(payload) > 2)
	case TypeCancelIsolation:
		if err := decodeEmpty(payload); err != nil {
			return fail("%v", err)
		}
		return e.isolate(ctx, false, nil, nil, false)
	case TypeQuarantineFile:
		p, err := DecodePath(payload)
		if err != nil {
			return fail("%v", err)
		}
		return e.quarantine(p)
	case TypeRestoreFile:
		id, err := DecodeQuarantineID(payload)
		if err != nil {
			return fail("%v", err)
		}
		return e.restore(id)
	case TypeTerminateProcess:
		pid, err := DecodePID(payload)
		if err != nil {
			return fail("%v", err)
		}
		return e.terminate(ctx, pid)
	case TypeRetrieveFile:
		p, err := DecodePath(payload)
		if err != nil {
			return fail("%v", err)
		}
		return e.retrieveFile(p)
	case TypeRetrieveSupportBundle:
		if err := decodeEmpty(payload); err != nil {
			return fail("%v", err)
		}
		return e.supportBundle()
	case TypeSetProxy:
		u, err := DecodeProxy(payload)
		if err != nil {
			return fail("%v", err)
		}
		return e.setProxy(u)
	case TypeClearProxy:
		if err := decodeEmpty(payload); err != nil {
			return fail("%v", err)
		}
		return e.setProxy("")
	case TypeHeartbeatNow:
		if err := decodeEmpty(payload); err != nil {
			return fail("%v", err)
		}
		if e.deps.HeartbeatNow == nil {
			return fail("heartbeat_now: not available in this agent")
		}
		e.deps.HeartbeatNow()
		return Result{OK: true}
	}
	return fail("unknown command type %q", typ)
}

// isolate applies the desired isolation; an isolate without an allow-list
// in its payload keeps the allow-list the agent already has.
func (e *Executor) isolate(ctx context.Context, on bool, cidrs []netip.Prefix, names []string, hasList bool) Result {
	if e.deps.Isolator == nil {
		return fail("isolation is not available on this host")
	}
	p := e.deps.Isolator.Policy()
	p.Isolated = on
	if hasList {
		p.AllowCIDRs, p.AllowNames = cidrs, names
	}
	if err := e.deps.Isolator.Apply(ctx, p); err != nil {
		return fail("%v", err)
	}
	return Result{OK: true}
}
