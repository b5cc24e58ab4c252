package actions

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// terminate SIGKILLs pid and waits until it is gone (or a zombie, which
// runs no more code). It refuses pid 1 and the agent itself.
func (e *Executor) terminate(ctx context.Context, pid int) Result {
	if pid <= 1 {
		return fail("terminate %d: refusing to kill init", pid)
	}
	if pid == e.self {
		return fail("terminate %d: refusing to kill the agent itself", pid)
	}
	start, _, err := procStat(pid)
	if err != nil {
		return fail("terminate %d: no such process", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return fail("terminate %d: no such process", pid)
		}
		return fail("terminate %d: %v", pid, err)
	}
	deadline := time.Now().Add(e.deps.KillWait)
	for {
		st, state, err := procStat(pid)
		if err != nil || st != start || state == "Z" || state == "X" {
			out := fmt.Appendf(nil, `{"pid":%d,"signal":"SIGKILL"}`, pid)
			return Result{OK: true, Output: out}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fail("terminate %d: still running after SIGKILL (state %s)", pid, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procStat returns a process's start time (clock ticks since boot: tells
// a reused pid apart) and state letter from /proc/<pid>/stat.
func procStat(pid int) (start, state string, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // comm may hold spaces and parens
	if i < 0 {
		return "", "", fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", "", fmt.Errorf("bad /proc/%d/stat", pid)
	}
	return f[19], f[0], nil // field 22 (starttime), field 3 (state)
}
