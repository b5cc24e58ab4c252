// Package harness starts the real Gatehouse binaries (cloud, relays, agents)
// on loopback for system tests and the demo, and kills, restarts and queries
// them. It does not depend on package testing, so the demo uses it too.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one running binary with its output in a log file.
type Proc struct {
	Name    string
	LogPath string
	// Netns, when set, runs the binary inside that network namespace
	// (`ip netns exec NAME bin args...`; ip execs the binary, so signals
	// and kill -9 reach it directly).
	Netns string
	// Env is added to the test's environment for the binary.
	Env  []string
	bin  string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// NewProc prepares a binary; Start runs it.
func NewProc(name, bin string, args []string, logPath string) *Proc {
	return &Proc{Name: name, bin: bin, args: args, LogPath: logPath}
}

// Start runs the binary, appending its stdout and stderr to LogPath.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !p.exited() {
		return fmt.Errorf("%s: already running", p.Name)
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: log: %w", p.Name, err)
	}
	bin, args := p.bin, p.args
	if p.Netns != "" {
		bin, args = "ip", append([]string{"netns", "exec", p.Netns, p.bin}, p.args...)
	}
	fmt.Fprintf(logf, "=== %s start %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	if len(p.Env) > 0 {
		cmd.Env = append(os.Environ(), p.Env...)
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Own process group: a test's kill reaches nothing else, and Ctrl-C in
	// the demo's terminal reaches only the demo, which then stops us in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%s: start %s: %w", p.Name, bin, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err = cmd, done, nil
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func (p *Proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Running reports whether the process is alive.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !p.exited()
}

// Kill sends SIGKILL (kill -9) and waits for the process to be gone.
func (p *Proc) Kill() error { return p.signalWait(syscall.SIGKILL, 10*time.Second) }

// Stop sends SIGTERM, waits up to timeout for a clean exit, then kills.
func (p *Proc) Stop(timeout time.Duration) error {
	err := p.signalWait(syscall.SIGTERM, timeout)
	if errors.Is(err, errTimeout) {
		p.Kill()
		return fmt.Errorf("%s: did not stop within %s after SIGTERM", p.Name, timeout)
	}
	return err
}

var errTimeout = errors.New("timeout")

func (p *Proc) signalWait(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return errTimeout
	}
}

// Pid is the running process's id (the binary's own: ip netns exec and
// the cgroup launcher exec it), 0 when it is not running.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.exited() {
		return 0
	}
	return p.cmd.Process.Pid
}

// ExitErr is the error of the last run's exit, nil while running or after a
// clean exit.
func (p *Proc) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Tail returns the last n lines of the process's log, for failure messages.
func (p *Proc) Tail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// LogContains reports whether the process's log holds s.
func (p *Proc) LogContains(s string) bool {
	b, _ := os.ReadFile(p.LogPath)
	return bytes.Contains(b, []byte(s))
}

// FreePort returns a loopback port free on both TCP and UDP at the time of
// the call, so one number serves a relay's QUIC and (later) TCP listeners.
func FreePort() (int, error) {
	for range 50 {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		tl.Close()
		if err != nil {
			continue
		}
		ul.Close()
		return port, nil
	}
	return 0, errors.New("no free port")
}

// WaitFor polls cond every 100ms until it returns true, it fails, or timeout.
func WaitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// BuildBinaries builds the four binaries into dir from the module that holds
// the working directory, unless GATEHOUSE_BIN names a directory that already
// has them (as `make test` does).
func BuildBinaries(dir string) (string, error) {
	if pre := os.Getenv("GATEHOUSE_BIN"); pre != "" {
		if _, err := os.Stat(filepath.Join(pre, "gatehouse-relay")); err == nil {
			return pre, nil
		}
	}
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd := exec.Command("go", "build", "-o", dir+"/",
		"./relay/cmd/gatehouse-relay", "./agent/cmd/gatehouse-agent",
		"./cloud/cmd/gatehouse-cloud", "./cloud/cmd/gatehousectl")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as `make build`: static binaries
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return dir, nil
}
