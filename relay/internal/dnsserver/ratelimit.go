package dnsserver

import (
	"net/netip"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

const limiterShards = 64

// limiter is a token bucket per client (/32 for IPv4, /64 for IPv6) in a
// bounded, sharded map. A full shard evicts idle buckets first (those that
// have refilled), then any.
type limiter struct {
	perNS    float64 // tokens per nanosecond
	burst    float64
	maxShard int
	clock    clockwork.Clock
	shards   [limiterShards]limShard
}

type limShard struct {
	mu sync.Mutex
	m  map[[8]byte]bucket
}

type bucket struct {
	tokens float64
	last   int64 // unix nanoseconds
}

func newLimiter(rl RateLimit, clock clockwork.Clock) *limiter {
	if rl.QPS <= 0 {
		return nil
	}
	maxClients := rl.MaxClients
	if maxClients <= 0 {
		maxClients = 65536
	}
	l := &limiter{
		perNS:    rl.QPS / float64(time.Second),
		burst:    float64(rl.Burst),
		maxShard: max(1, maxClients/limiterShards),
		clock:    clock,
	}
	for i := range l.shards {
		l.shards[i].m = make(map[[8]byte]bucket)
	}
	return l
}

// clientKey is the client's /32 (IPv4) or /64 (IPv6).
func clientKey(a netip.Addr) [8]byte {
	var k [8]byte
	if a.Is4() {
		b := a.As4()
		copy(k[:], b[:])
		k[7] = 4
		return k
	}
	b := a.As16()
	copy(k[:], b[:8])
	return k
}

// allow takes a token for the client; false means over the limit.
func (l *limiter) allow(a netip.Addr) bool {
	if l == nil {
		return true
	}
	k := clientKey(a)
	h := uint32(2166136261)
	for _, c := range k {
		h = (h ^ uint32(c)) * 16777619
	}
	sh := &l.shards[h%limiterShards]
	now := l.clock.Now().UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b, ok := sh.m[k]
	if !ok {
		if len(sh.m) >= l.maxShard {
			l.evict(sh, now)
		}
		b = bucket{tokens: l.burst, last: now}
	} else if now > b.last {
		b.tokens = min(l.burst, b.tokens+float64(now-b.last)*l.perNS)
		b.last = now
	}
	allowed := b.tokens >= 1
	if allowed {
		b.tokens--
	}
	sh.m[k] = b
	return allowed
}

// evict removes up to a few idle buckets, or one arbitrary bucket when none
// is idle. Bounded work per call.
func (l *limiter) evict(sh *limShard, now int64) {
	checked, removed := 0, 0
	for k, b := range sh.m {
		if b.tokens+float64(now-b.last)*l.perNS >= l.burst {
			delete(sh.m, k)
			removed++
		}
		checked++
		if checked >= 16 {
			break
		}
	}
	if removed == 0 {
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
	}
}
