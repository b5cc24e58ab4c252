package config

// Isolation tunes where host isolation is enforced (docs/isolation.md).
type Isolation struct {
	// Cgroup is the cgroup v2 directory the eBPF programs attach to; empty
	// means the root of the unified hierarchy, the whole host. Tests point
	// it at a child cgroup so that they never isolate the machine.
	Cgroup string `yaml:"cgroup"`
	// PinDir is where programs and maps are pinned (a bpffs); empty means
	// /sys/fs/bpf/gatehouse.
	PinDir string `yaml:"pin_dir"`
}
