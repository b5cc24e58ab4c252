package dnsserver

import (
	"container/list"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

const (
	// maxCacheTTL caps how long an upstream answer is kept.
	maxCacheTTL = time.Hour
	// maxNegativeTTL caps negative answers (NXDOMAIN, NODATA).
	maxNegativeTTL = 5 * time.Minute
)

// cache is a bounded LRU of upstream answers that honours their TTLs.
type cache struct {
	mu    sync.Mutex
	size  int
	clock clockwork.Clock
	ll    *list.List // front is most recent
	items map[string]*list.Element
}

type cacheEntry struct {
	key     string
	msg     *dns.Msg // without OPT
	stored  time.Time
	expires time.Time
}

func newCache(size int, clock clockwork.Clock) *cache {
	if size <= 0 {
		return nil
	}
	return &cache{size: size, clock: clock, ll: list.New(), items: make(map[string]*list.Element, size)}
}

// cacheKey keys an answer by the question and the DO and CD bits: an
// answer fetched with checking disabled may hold data a validating
// upstream would refuse (SERVFAIL) to a client that did not disable it,
// so the two never share an entry (RFC 4035 4.7).
func cacheKey(q dns.Question, do, cd bool) string {
	d := byte(0)
	if do {
		d = 1
	}
	if cd {
		d |= 2
	}
	return strings.ToLower(q.Name) + string([]byte{byte(q.Qtype >> 8), byte(q.Qtype), byte(q.Qclass >> 8), byte(q.Qclass), d})
}

// cacheTTL is how long resp may be kept: the smallest TTL of its answer
// and authority records, or for a negative answer the SOA's negative TTL
// (RFC 2308); 0 means do not cache.
func cacheTTL(resp *dns.Msg) time.Duration {
	switch {
	case resp.Truncated:
		return 0
	case resp.Rcode == dns.RcodeNameError || (resp.Rcode == dns.RcodeSuccess && len(resp.Answer) == 0):
		for _, rr := range resp.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl := min(soa.Hdr.Ttl, soa.Minttl)
				return min(time.Duration(ttl)*time.Second, maxNegativeTTL)
			}
		}
		return 0
	case resp.Rcode != dns.RcodeSuccess:
		return 0
	}
	ttl := uint32(1<<32 - 1)
	for _, sec := range [][]dns.RR{resp.Answer, resp.Ns} {
		for _, rr := range sec {
			ttl = min(ttl, rr.Header().Ttl)
		}
	}
	return min(time.Duration(ttl)*time.Second, maxCacheTTL)
}

func (c *cache) put(key string, resp *dns.Msg) {
	if c == nil {
		return
	}
	ttl := cacheTTL(resp)
	if ttl <= 0 {
		return
	}
	m := resp.Copy()
	stripOPT(m)
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		e := el.Value.(*cacheEntry)
		e.msg, e.stored, e.expires = m, now, now.Add(ttl)
		c.ll.MoveToFront(el)
		return
	}
	c.items[key] = c.ll.PushFront(&cacheEntry{key: key, msg: m, stored: now, expires: now.Add(ttl)})
	for c.ll.Len() > c.size {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
}

// get returns a copy of the cached answer with its TTLs lowered by the
// time it spent in the cache, or nil.
func (c *cache) get(key string) *dns.Msg {
	if c == nil {
		return nil
	}
	now := c.clock.Now()
	c.mu.Lock()
	el, ok := c.items[key]
	if !ok {
		c.mu.Unlock()
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.items, key)
		c.mu.Unlock()
		return nil
	}
	c.ll.MoveToFront(el)
	m, stored := e.msg, e.stored
	c.mu.Unlock()
	out := m.Copy()
	age := uint32(now.Sub(stored) / time.Second)
	for _, sec := range [][]dns.RR{out.Answer, out.Ns, out.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Ttl > age {
				h.Ttl -= age
			} else {
				h.Ttl = 0
			}
		}
	}
	return out
}

func (c *cache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// stripOPT removes OPT records from the additional section.
func stripOPT(m *dns.Msg) {
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
}
