package uplink

import (
	"math/rand/v2"
	"time"
)

// backoff is exponential backoff with full jitter: the n-th wait is uniform
// in [0, min(max, min*2^n)], at least min/2 so a hot loop cannot form.
type backoff struct {
	min, max time.Duration
	attempt  int
}

func (b *backoff) next() time.Duration {
	ceil := b.max
	if b.attempt < 32 {
		if d := b.min << b.attempt; d > 0 && d < b.max {
			ceil = d
		}
	}
	b.attempt++
	d := time.Duration(rand.Int64N(int64(ceil) + 1))
	if d < b.min/2 {
		d = b.min / 2
	}
	return d
}

func (b *backoff) reset() { b.attempt = 0 }
