package cluster

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// DefaultPort is the cluster port (Raft and cluster RPC, mutual TLS, TCP).
const DefaultPort = 7946

// Config is the `cluster:` section of the relay config.
type Config struct {
	// DataDir holds the CA, node certificate, raft log, stable store and snapshots.
	DataDir string `yaml:"data_dir"`
	// NodeID names this node in Raft; it must be unique and stable.
	NodeID string `yaml:"node_id"`
	// Name is a human name shown in status.
	Name string `yaml:"name"`
	// Bind is the TCP listen address of the cluster port.
	Bind string `yaml:"bind"`
	// Advertise is the address other nodes dial; default: the bound address.
	Advertise string `yaml:"advertise"`
	// AgentAddr is the agent-facing address of this relay, told to agents.
	AgentAddr string `yaml:"agent_addr"`
	// AgentFingerprint is this relay's agent-facing key fingerprint, set by
	// the relay from its identity (not configurable).
	AgentFingerprint string `yaml:"-"`

	HeartbeatTimeout   time.Duration `yaml:"heartbeat_timeout"`
	ElectionTimeout    time.Duration `yaml:"election_timeout"`
	LeaderLeaseTimeout time.Duration `yaml:"leader_lease_timeout"`
	CommitTimeout      time.Duration `yaml:"commit_timeout"`
	// ApplyTimeout bounds a write (including forwarding and waiting for a leader).
	ApplyTimeout      time.Duration `yaml:"apply_timeout"`
	SnapshotInterval  time.Duration `yaml:"snapshot_interval"`
	SnapshotThreshold uint64        `yaml:"snapshot_threshold"`
	TrailingLogs      uint64        `yaml:"trailing_logs"`
	SnapshotRetain    int           `yaml:"snapshot_retain"`
	// LogSegmentBytes is the raft-wal segment size, preallocated when a
	// segment starts; 0 keeps raft-wal's default (64 MiB).
	LogSegmentBytes int `yaml:"log_segment_bytes"`
}

// Default returns production defaults.
func Default() Config {
	return Config{
		Bind:               fmt.Sprintf(":%d", DefaultPort),
		HeartbeatTimeout:   1000 * time.Millisecond,
		ElectionTimeout:    1000 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      50 * time.Millisecond,
		ApplyTimeout:       5 * time.Second,
		SnapshotInterval:   2 * time.Minute,
		SnapshotThreshold:  8192,
		TrailingLogs:       10240,
		SnapshotRetain:     3,
		// Control writes are a few hundred bytes: 4 MiB holds about a
		// snapshot interval's worth, and a relay alone on a small data disk
		// (every relay runs Raft) does not give 64 MiB to its first segment.
		LogSegmentBytes: 4 << 20,
	}
}

// Validate checks the config.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("cluster.data_dir is required"))
	}
	if c.NodeID == "" {
		errs = append(errs, errors.New("cluster.node_id is required"))
	}
	if _, _, err := net.SplitHostPort(c.Bind); err != nil {
		errs = append(errs, fmt.Errorf("cluster.bind %q: %w", c.Bind, err))
	}
	if c.Advertise != "" {
		if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
			errs = append(errs, fmt.Errorf("cluster.advertise %q: %w", c.Advertise, err))
		}
	}
	for name, d := range map[string]time.Duration{
		"heartbeat_timeout": c.HeartbeatTimeout, "election_timeout": c.ElectionTimeout,
		"leader_lease_timeout": c.LeaderLeaseTimeout, "commit_timeout": c.CommitTimeout,
		"apply_timeout": c.ApplyTimeout, "snapshot_interval": c.SnapshotInterval,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("cluster.%s must be positive", name))
		}
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, errors.New("cluster.leader_lease_timeout must not exceed heartbeat_timeout"))
	}
	if c.SnapshotThreshold == 0 || c.SnapshotRetain < 1 {
		errs = append(errs, errors.New("cluster.snapshot_threshold and snapshot_retain must be positive"))
	}
	return errors.Join(errs...)
}
