package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// AgentOptions configure a test agent.
type AgentOptions struct {
	// Collectors turns on the host-wide collectors (process, netflow, auth,
	// filemod); off, the agent collects only its log globs and host stats.
	Collectors      bool
	Relays          []string
	Fingerprint     string
	RegistrationKey string
	LogGlobs        []string
	RingMaxBytes    int64 // 0: the agent's default
	Hostname        string
	Place           Place  // where it runs (only Netns matters); zero: here
	Proxy           string // proxy: http://user:pass@host:port; "": none
	TransportMode   string // transport.mode: auto, quic or tcp; "": default
	PolicyTier      string // policy_tier at start; "": the agent's default
	// Extra sets more top-level config keys (e.g. "filemod": {...}).
	Extra map[string]any
	// Cgroup, when set, runs the agent inside that cgroup v2 directory (it
	// moves itself there before it execs the agent) and, with Place.Netns,
	// in that network namespace through nsenter: unlike `ip netns exec` it
	// keeps the host's /sys, so the cgroup and a bpffs mounted by the test
	// stay visible and pins outlive the process.
	Cgroup string
	// ResolvConf, with Cgroup, is bind-mounted over /etc/resolv.conf in a
	// mount namespace of the agent's own (its DNS servers).
	ResolvConf string
	// Isolation sets the agent's isolation config (cgroup, pin_dir).
	Isolation map[string]any
}

// cgroupLauncher moves itself into $GH_CGROUP, then execs the agent (its
// arguments) in the network namespace $GH_NETNS, with $GH_RESOLV_CONF over
// /etc/resolv.conf when set. Every step execs: signals reach the agent.
const cgroupLauncher = `echo $$ > "$GH_CGROUP/cgroup.procs" || exit 1
set -- ${GH_NETNS:+nsenter --net=/run/netns/$GH_NETNS} "$@"
if [ -n "$GH_RESOLV_CONF" ]; then
	exec unshare -m sh -c 'mount --bind "$GH_RESOLV_CONF" /etc/resolv.conf && exec "$@"' sh "$@"
fi
exec "$@"`

// Agent is a running gatehouse-agent.
type Agent struct {
	*Proc
	DataDir string
	Config  string
	conf    map[string]any
}

// AgentStatus is the agent's status.json.
type AgentStatus struct {
	AgentID    string `json:"agent_id"`
	State      string `json:"state"`
	Relay      string `json:"relay"`
	Transport  string `json:"transport"` // quic, tcp or tcp+proxy
	Proxy      string `json:"proxy"`
	LastError  string `json:"last_error"`
	PolicyTier string `json:"policy_tier"` // server or workstation, as the collectors run
	Ring       struct {
		Batches        int64 `json:"batches"`
		Bytes          int64 `json:"bytes"`
		MaxBytes       int64 `json:"max_bytes"`
		DroppedBatches int64 `json:"dropped_batches"`
	} `json:"ring"`
	Logs struct {
		Lines          int64 `json:"lines"`
		TruncatedLines int64 `json:"truncated_lines"`
		LostFiles      int64 `json:"lost_files"`
	} `json:"logs"`
	NextSeq            uint64 `json:"next_seq"`
	Pending            int64  `json:"pending"`
	SpooledUndelivered int64  `json:"spooled_undelivered"`
	DeliveredTotal     int64  `json:"delivered_total"`
}

// StartAgent starts an agent with its data under dir. It does not wait for
// the connection: tests wait on the state they need.
func StartAgent(ctx context.Context, bin, dir string, opt AgentOptions) (*Agent, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	a := &Agent{DataDir: filepath.Join(dir, "data"), Config: filepath.Join(dir, "agent.yaml")}
	host := opt.Hostname
	if host == "" {
		host = filepath.Base(dir)
	}
	cfg := map[string]any{
		"data_dir":           a.DataDir,
		"relays":             opt.Relays,
		"relay_fingerprint":  opt.Fingerprint,
		"registration_key":   opt.RegistrationKey,
		"hostname":           host,
		"heartbeat_interval": "30s",
		"stats_interval":     "10s",
		"status_interval":    "1s", // tests poll status.json
		"batch":              map[string]any{"max_delay": "200ms"},
		"logs":               []map[string]any{{"paths": opt.LogGlobs}},
	}
	if !opt.Collectors {
		// The data-path tests count log lines; host-wide collectors would only
		// add load and noise there.
		for _, c := range []string{"process", "netflow", "auth", "filemod"} {
			cfg[c] = map[string]any{"enabled": false}
		}
	}
	if opt.RingMaxBytes > 0 {
		cfg["ring"] = map[string]any{"max_bytes": opt.RingMaxBytes}
	}
	if opt.Proxy != "" {
		cfg["proxy"] = opt.Proxy
	}
	if opt.TransportMode != "" {
		cfg["transport"] = map[string]any{"mode": opt.TransportMode}
	}
	if opt.PolicyTier != "" {
		cfg["policy_tier"] = opt.PolicyTier
	}
	if opt.Isolation != nil {
		cfg["isolation"] = opt.Isolation
	}
	for k, v := range opt.Extra {
		cfg[k] = v
	}
	a.conf = cfg
	if err := writeYAML(a.Config, cfg); err != nil {
		return nil, err
	}
	a.Proc = NewProc(filepath.Base(dir), filepath.Join(bin, "gatehouse-agent"), []string{"run", "--config", a.Config}, filepath.Join(dir, "agent.log"))
	a.Proc.Netns = opt.Place.Netns
	if opt.Cgroup != "" {
		args := append([]string{"-c", cgroupLauncher, "sh", filepath.Join(bin, "gatehouse-agent")}, a.Proc.args...)
		a.Proc = NewProc(a.Proc.Name, "sh", args, a.Proc.LogPath)
		a.Proc.Env = []string{"GH_CGROUP=" + opt.Cgroup, "GH_NETNS=" + opt.Place.Netns, "GH_RESOLV_CONF=" + opt.ResolvConf}
	}
	if err := a.Start(); err != nil {
		return nil, err
	}
	return a, nil
}

// SetProxy rewrites proxy in the agent's config file ("" removes it); it
// takes effect when the agent is started again.
func (a *Agent) SetProxy(proxy string) error {
	if proxy == "" {
		delete(a.conf, "proxy")
	} else {
		a.conf["proxy"] = proxy
	}
	return writeYAML(a.Config, a.conf)
}

// Status reads the agent's status file.
func (a *Agent) Status() (AgentStatus, error) {
	var s AgentStatus
	b, err := os.ReadFile(filepath.Join(a.DataDir, "status.json"))
	if err != nil {
		return s, err
	}
	err = json.Unmarshal(b, &s)
	return s, err
}

// WaitConnected waits until the agent reports it is connected.
func (a *Agent) WaitConnected(ctx context.Context, timeout time.Duration) error {
	return WaitFor(ctx, timeout, a.Name+" connected", func() (bool, error) {
		if !a.Running() {
			return false, fmt.Errorf("%s exited: %v\n%s", a.Name, a.ExitErr(), a.Tail(30))
		}
		s, err := a.Status()
		return err == nil && s.State == "connected", err
	})
}
