package harness

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"
)

var joinTokenRE = regexp.MustCompile(`join token \(keep it secret\): (\S+)`)

// relayCLI runs `gatehouse-relay --config <its config> args...`.
func (r *Relay) relayCLI(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	full := append([]string{"--config", r.Config}, args...)
	cmd := exec.CommandContext(ctx, r.bin, full...)
	if r.Netns != "" {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", r.Netns, r.bin}, full...)...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("gatehouse-relay %v: %w\n%s", args, err, out)
	}
	return string(out), nil
}

// ClusterInit makes the (stopped) relay the first member of a new cluster
// and returns the join token.
func (r *Relay) ClusterInit(ctx context.Context) (string, error) {
	out, err := r.relayCLI(ctx, "cluster", "init")
	if err != nil {
		return "", err
	}
	m := joinTokenRE.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("cluster init printed no join token:\n%s", out)
	}
	return m[1], nil
}

// ClusterJoin enrolls the (stopped) relay through a running member,
// retrying while the member's cluster port is still coming up.
func (r *Relay) ClusterJoin(ctx context.Context, memberAddr, token string) error {
	var last error
	err := WaitFor(ctx, 30*time.Second, r.Name+" joined", func() (bool, error) {
		_, last = r.relayCLI(ctx, "cluster", "join", memberAddr, "--token", token)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%w: %v", err, last)
	}
	return nil
}

// ClusterStatus is the relay's own view of the cluster (`cluster status -o json`).
type ClusterStatus struct {
	NodeID      string `json:"node_id"`
	State       string `json:"state"`
	LeaderID    string `json:"leader_id"`
	LastIndex   uint64 `json:"last_index"`
	CommitIndex uint64 `json:"commit_index"`
	Members     []struct {
		ID        string `json:"id"`
		State     string `json:"state"`
		Suffrage  string `json:"suffrage"`
		AgentAddr string `json:"agent_addr"`
	} `json:"members"`
}

// ClusterStatus asks the running relay.
func (r *Relay) ClusterStatus(ctx context.Context) (ClusterStatus, error) {
	var st ClusterStatus
	err := getJSON(ctx, r.hc, "http://"+r.AdminAddr+"/v1/cluster/status", &st)
	return st, err
}

// NodeID is the relay's cluster node id (its name, the directory's base).
func (r *Relay) NodeID() string { return filepath.Base(filepath.Dir(r.DataDir)) }
