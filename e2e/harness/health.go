package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// StartupCase runs one binary (gatehouse-cloud, gatehouse-relay or
// gatehouse-agent) with a data directory and ports a start-up test chooses,
// standing alone: the relay points at a cloud that is not there, the agent
// at a relay that is not there, which is enough to start.
type StartupCase struct {
	Bin, Prog string
	Dir       string // the case's scratch directory
	DataDir   string // Dir/data unless the test changes it
	Listen    string // the cloud's relay API or the relay's agent port
	Admin     string // the admin HTTP address
	n         int
}

// NewStartupCase prepares a case with free loopback ports.
func NewStartupCase(dir, bin, prog string) *StartupCase {
	s := &StartupCase{Bin: bin, Prog: prog, Dir: dir, DataDir: filepath.Join(dir, "data")}
	s.NewPorts()
	return s
}

// NewPorts picks other free ports, for a second instance.
func (s *StartupCase) NewPorts() error {
	lp, err := FreePort()
	if err != nil {
		return err
	}
	ap, err := FreePort()
	if err != nil {
		return err
	}
	s.Listen, s.Admin = fmt.Sprintf("127.0.0.1:%d", lp), fmt.Sprintf("127.0.0.1:%d", ap)
	return nil
}

// args writes the case's config as it stands and returns the command line.
func (s *StartupCase) args() ([]string, error) {
	s.n++
	cfg := filepath.Join(s.Dir, fmt.Sprintf("%s-%d.yaml", s.Prog, s.n))
	switch s.Prog {
	case "gatehouse-cloud":
		return []string{"--data-dir", s.DataDir, "--listen", s.Listen, "--admin-listen", s.Admin}, nil
	case "gatehouse-relay":
		return []string{"--config", cfg}, writeYAML(cfg, map[string]any{
			"data_dir": s.DataDir, "listen": s.Listen, "admin_listen": s.Admin,
			// Port 9 (discard) on loopback: nothing answers; the relay starts
			// anyway and keeps trying to enroll.
			"cloud": map[string]any{"url": "https://127.0.0.1:9", "enrollment_token": "startup-test"},
		})
	case "gatehouse-agent":
		c := map[string]any{
			"data_dir": s.DataDir, "relays": []string{s.Listen}, "registration_key": "startup-test",
			"relay_fingerprint": strings.Repeat("ab", 32),
		}
		for _, col := range []string{"process", "netflow", "auth", "filemod"} {
			c[col] = map[string]any{"enabled": false}
		}
		return []string{"run", "--config", cfg}, writeYAML(cfg, c)
	}
	return nil, fmt.Errorf("startup case: unknown program %q", s.Prog)
}

// Proc prepares a long-running instance named name (log in Dir/name.log).
func (s *StartupCase) Proc(name string) *Proc {
	args, err := s.args()
	if err != nil {
		// An unknown program or an unwritable scratch dir: make the error
		// show when the process fails to start.
		return NewProc(name, "/bin/false", nil, filepath.Join(s.Dir, name+".log"))
	}
	return NewProc(name, filepath.Join(s.Bin, s.Prog), args, filepath.Join(s.Dir, name+".log"))
}

// Started reports whether p logged that it is up (it then holds its data
// directory and ports).
func (s *StartupCase) Started(p *Proc) bool {
	switch s.Prog {
	case "gatehouse-cloud":
		return p.LogContains("gatehouse-cloud started")
	case "gatehouse-relay":
		return p.LogContains("relay running")
	default:
		return p.LogContains("agent starting")
	}
}

// RunToExit runs one more instance and waits for it to exit (it is
// expected to fail at start), returning its output and exit code. A
// process still running at timeout is killed and reported with code 0.
func (s *StartupCase) RunToExit(t interface{ Fatal(...any) }, timeout time.Duration) (string, int) {
	args, err := s.args()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(s.Bin, s.Prog), args...).CombinedOutput()
	if ctx.Err() != nil {
		return string(out) + "\n(still running at timeout: killed)", 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// waitServing waits until a relay serves agents: /readyz leaving out the
// cloud check, since tests start relays whose cloud is away on purpose.
func waitServing(ctx context.Context, p *Proc, hc *http.Client, adminAddr string, timeout time.Duration) error {
	return waitReadyPath(ctx, p, hc, adminAddr, "/readyz?exclude=cloud", timeout)
}

// Readyz is the relay's full GET /readyz: the status code and the body,
// which names the cause when not ready.
func (r *Relay) Readyz(ctx context.Context) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.AdminAddr+"/readyz", nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}
