package cluster

import (
	"errors"

	"github.com/gatehouse/gatehouse/cluster/state"
)

var (
	// ErrNoQuorum means this node cannot reach a majority of the cluster.
	ErrNoQuorum = errors.New("no cluster quorum: control writes refused; telemetry is still accepted")
	// ErrNotFound is returned by reads of an unknown key.
	ErrNotFound = state.ErrNotFound
	// ErrUnauthorized means a join token or peer certificate was refused.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrNotInitialized means the data dir holds no cluster credentials:
	// run `cluster init` or `cluster join` first.
	ErrNotInitialized = errors.New("cluster not initialized: run cluster init or cluster join")
	// ErrUnknownCommand is an FSM command type this build does not know.
	ErrUnknownCommand = state.ErrUnknownCommand
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("cluster node closed")
)
