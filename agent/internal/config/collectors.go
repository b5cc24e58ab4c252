package config

import (
	"fmt"
	"path/filepath"
	"time"
)

// Collectors configures the security collectors and the policy tier. Its
// keys sit at the top level of agent.yaml.
type Collectors struct {
	// PolicyTier is server (process creation, netflow connect) or
	// workstation (adds terminations, accepts and closes). The cloud may
	// change it at run time.
	PolicyTier string `yaml:"policy_tier"`
	// SecurityMaxDelay paces the security collectors: they read the
	// kernel's events on ticks of it and write one batch per tick, so an
	// event reaches the ring (and the relay) at most this long after it
	// happened. Shorter costs CPU: each tick wakes the agent.
	SecurityMaxDelay time.Duration `yaml:"security_max_delay"`
	Process          ProcessConfig `yaml:"process"`
	Netflow          NetflowConfig `yaml:"netflow"`
	Auth             AuthConfig    `yaml:"auth"`
	FileMod          FileModConfig `yaml:"filemod"`
	// AutoUpdate lets the agent update itself when the relay offers a
	// newer version (install --disable-auto-update turns it off).
	AutoUpdate bool `yaml:"auto_update"`
}

// ProcessConfig configures the eBPF process collector.
type ProcessConfig struct {
	Enabled bool `yaml:"enabled"`
	// HashesExcludedPaths: executables not hashed; a directory prefix
	// ending in "/" or a filepath.Match glob.
	HashesExcludedPaths []string `yaml:"hashes_excluded_paths"`
	// HashMaxBytes: larger executables are not hashed (0: no limit).
	HashMaxBytes int64 `yaml:"hash_max_bytes"`
}

// NetflowConfig configures the eBPF TCP collector.
type NetflowConfig struct {
	Enabled bool `yaml:"enabled"`
}

// AuthConfig configures the authentication collector.
type AuthConfig struct {
	Enabled bool `yaml:"enabled"`
	// Source is auto (the files when present, else journald), file or journald.
	Source string   `yaml:"source"`
	Paths  []string `yaml:"paths"`
}

// FileModConfig configures the file modification collector.
type FileModConfig struct {
	Enabled bool     `yaml:"enabled"`
	Paths   []string `yaml:"paths"` // directories, watched non-recursively
}

// DefaultCollectors is every collector on, workstation tier.
func DefaultCollectors() Collectors {
	return Collectors{
		PolicyTier:       "workstation",
		AutoUpdate:       true,
		SecurityMaxDelay: time.Second,
		Process:          ProcessConfig{Enabled: true, HashMaxBytes: 64 << 20},
		Netflow:          NetflowConfig{Enabled: true},
		Auth:             AuthConfig{Enabled: true, Source: "auto", Paths: []string{"/var/log/auth.log", "/var/log/secure"}},
		FileMod:          FileModConfig{Enabled: true, Paths: []string{"/etc", "/etc/ssh", "/etc/cron.d", "/root/.ssh", "/usr/local/bin"}},
	}
}

// ValidateCollectors reports every problem in c.
func (c *Collectors) ValidateCollectors() []error {
	var errs []error
	switch c.PolicyTier {
	case "server", "workstation":
	default:
		errs = append(errs, fmt.Errorf("policy_tier: %q, want server or workstation", c.PolicyTier))
	}
	if c.SecurityMaxDelay < 0 || c.SecurityMaxDelay > 10*time.Second {
		errs = append(errs, fmt.Errorf("security_max_delay: %s, want 0..10s", c.SecurityMaxDelay))
	}
	for _, p := range c.Process.HashesExcludedPaths {
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("process.hashes_excluded_paths: %q: want an absolute path or glob", p))
		} else if _, err := filepath.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("process.hashes_excluded_paths: %q: %w", p, err))
		}
	}
	if c.Process.HashMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("process.hash_max_bytes: %d, want >= 0", c.Process.HashMaxBytes))
	}
	switch c.Auth.Source {
	case "auto", "file", "journald":
	default:
		errs = append(errs, fmt.Errorf("auth.source: %q, want auto, file or journald", c.Auth.Source))
	}
	for _, p := range c.Auth.Paths {
		if err := ValidateGlob(p); err != nil {
			errs = append(errs, fmt.Errorf("auth.paths: %w", err))
		}
	}
	for _, p := range c.FileMod.Paths {
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("filemod.paths: %q: want an absolute directory", p))
		}
	}
	return errs
}
