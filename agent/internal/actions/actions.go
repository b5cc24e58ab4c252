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

	"github.com/jonboulle/clockwork"

	"github.com/gatehouse/gatehouse/agent/internal/isolate"
	"github.com/gatehouse/gatehouse/internal/action"
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
	Clock    clockwork.Clock
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
	if deps.Clock == nil {
		deps.Clock = clockwork.NewRealClock()
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
	typ := action.Name(cmd.GetAction().GetType())
	if r, ok := e.done.get(id); ok {
		e.log.Info("command already done: same result", "id", id, "type", typ)
		return &agentv1.CommandResult{Id: id, Ok: r.OK, Reason: r.Reason, Output: r.Output}
	}
	r := e.run(ctx, cmd.GetAction())
	e.log.Info("command executed", "id", id, "type", typ, "ok", r.OK, "reason", r.Reason, "output_bytes", len(r.Output))
	if err := e.done.put(id, typ, r); err != nil {
		e.log.Error("record done command", "id", id, "err", err)
	}
	return &agentv1.CommandResult{Id: id, Ok: r.OK, Reason: r.Reason, Output: r.Output}
}

func (e *Executor) run(ctx context.Context, a *agentv1.Action) Result {
	// The one validation of every payload, the cloud's too: the relay in
	// between is not trusted to have checked.
	if err := action.Validate(a); err != nil {
		return fail("%v", err)
	}
	switch a.GetType() {
	case agentv1.ActionType_ACTION_TYPE_ISOLATE:
		cidrs, names, hasList := isolatePolicy(a.GetIsolate())
		return e.isolate(ctx, true, cidrs, names, hasList)
	case agentv1.ActionType_ACTION_TYPE_CANCEL_ISOLATION:
		return e.isolate(ctx, false, nil, nil, false)
	case agentv1.ActionType_ACTION_TYPE_QUARANTINE_FILE:
		return e.quarantine(cleanPath(a.GetQuarantineFile().GetPath()))
	case agentv1.ActionType_ACTION_TYPE_RESTORE_FILE:
		id := a.GetRestoreFile().GetQuarantineId()
		if !validQuarantineID(id) {
			return fail("%v: quarantine_id %q: want 32 hex digits", action.ErrInvalid, id)
		}
		return e.restore(id)
	case agentv1.ActionType_ACTION_TYPE_TERMINATE_PROCESS:
		return e.terminate(ctx, int(a.GetTerminateProcess().GetPid()))
	case agentv1.ActionType_ACTION_TYPE_RETRIEVE_FILE:
		return e.retrieveFile(cleanPath(a.GetRetrieveFile().GetPath()))
	case agentv1.ActionType_ACTION_TYPE_RETRIEVE_SUPPORT_BUNDLE:
		return e.supportBundle()
	case agentv1.ActionType_ACTION_TYPE_SET_PROXY:
		return e.setProxy(a.GetSetProxy().GetUrl())
	case agentv1.ActionType_ACTION_TYPE_CLEAR_PROXY:
		return e.setProxy("")
	case agentv1.ActionType_ACTION_TYPE_HEARTBEAT_NOW:
		if e.deps.HeartbeatNow == nil {
			return fail("heartbeat_now: not available in this agent")
		}
		e.deps.HeartbeatNow()
		return Result{OK: true}
	}
	return fail("unknown command type %q", a.GetType())
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
