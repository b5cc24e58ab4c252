package state

import "errors"

var (
	// ErrNotFound is returned by reads of an unknown key.
	ErrNotFound = errors.New("not found")
	// ErrUnknownCommand is an FSM command type this build does not know.
	ErrUnknownCommand = errors.New("unknown command type")
)
