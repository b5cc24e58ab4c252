package ecs

// The ECS objects the security collectors fill (process, user, network,
// file). Empty fields are left out of the JSON.

// Process is the ECS "process" object.
type Process struct {
	PID         uint32   `json:"pid"`
	Name        string   `json:"name,omitempty"`
	Executable  string   `json:"executable,omitempty"`
	CommandLine string   `json:"command_line,omitempty"`
	Args        []string `json:"args,omitempty"`
	ArgsCount   int      `json:"args_count,omitempty"`
	Start       string   `json:"start,omitempty"`
	End         string   `json:"end,omitempty"`
	ExitCode    *int     `json:"exit_code,omitempty"`
	Parent      *Parent  `json:"parent,omitempty"`
	Hash        *Hash    `json:"hash,omitempty"`
	User        *User    `json:"user,omitempty"`
}

// Parent is the ECS "process.parent" object (what we know of it).
type Parent struct {
	PID uint32 `json:"pid"`
}

// Hash is the ECS "hash" object.
type Hash struct {
	SHA256 string `json:"sha256"`
}

// User is the ECS "user" object.
type User struct {
	ID     string  `json:"id,omitempty"`
	Name   string  `json:"name,omitempty"`
	Target *Target `json:"target,omitempty"`
}

// Target is the ECS "user.target" object (sudo/su target user).
type Target struct {
	Name string `json:"name,omitempty"`
}

// Endpoint is the ECS "source" or "destination" object.
type Endpoint struct {
	IP   string `json:"ip,omitempty"`
	Port uint16 `json:"port,omitempty"`
}

// Network is the ECS "network" object.
type Network struct {
	Transport string `json:"transport,omitempty"`
	Type      string `json:"type,omitempty"` // ipv4, ipv6
	Direction string `json:"direction,omitempty"`
}

// File is the ECS "file" object.
type File struct {
	Path      string `json:"path"`
	Name      string `json:"name,omitempty"`
	Directory string `json:"directory,omitempty"`
}

// Related is the ECS "related" object.
type Related struct {
	User []string `json:"user,omitempty"`
	IP   []string `json:"ip,omitempty"`
}
