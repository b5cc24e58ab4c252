package spool

import "errors"

// ErrClosed is returned by Append once the committer has stopped.
var ErrClosed = errors.New("spool closed")
