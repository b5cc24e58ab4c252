package store

import "errors"

// Sentinel errors. The relay and admin APIs turn them into wire status codes,
// each in exactly one place.
var (
	ErrNotFound        = errors.New("not found")
	ErrConflict        = errors.New("already exists")
	ErrInvalid         = errors.New("invalid argument")
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrKeyInvalid      = errors.New("registration key invalid")
	ErrKeyExpired      = errors.New("registration key expired")
	ErrClosed          = errors.New("store closed")
)
