package state

import "sync"

// Kinds is a set of state kinds, for watchers.
type Kinds uint32

const (
	KindAgents Kinds = 1 << iota
	KindRegistrationKeys
	KindIsolation
	KindDNS
	KindAllowLists
	KindCommands
	KindMembers

	KindAll = KindAgents | KindRegistrationKeys | KindIsolation | KindDNS | KindAllowLists | KindCommands | KindMembers
)

// Watcher is told when the kinds it watches change. Notifications coalesce:
// C() has room for one; Changed() says which kinds changed since the last
// call. A watcher re-reads the Store on each notification.
type Watcher struct {
	w    *watchers
	mask Kinds
	ch   chan struct{}
	mu   sync.Mutex
	got  Kinds
}

// C fires (coalesced) after a change of a watched kind.
func (w *Watcher) C() <-chan struct{} { return w.ch }

// Changed returns and clears the kinds changed since the last call.
func (w *Watcher) Changed() Kinds {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := w.got
	w.got = 0
	return k
}

// Close stops notifications; idempotent.
func (w *Watcher) Close() {
	w.w.mu.Lock()
	delete(w.w.set, w)
	w.w.mu.Unlock()
}

type watchers struct {
	mu  sync.Mutex
	set map[*Watcher]struct{}
}

// Watchers are the watchers of one Store, told by its FSM.
type Watchers = watchers

// NewWatchers returns an empty set.
func NewWatchers() *Watchers { return &watchers{set: map[*Watcher]struct{}{}} }

// Add returns a watcher told about changes of the given kinds.
func (ws *watchers) Add(mask Kinds) *Watcher { return ws.add(mask) }

func (ws *watchers) add(mask Kinds) *Watcher {
	w := &Watcher{w: ws, mask: mask, ch: make(chan struct{}, 1)}
	ws.mu.Lock()
	ws.set[w] = struct{}{}
	ws.mu.Unlock()
	return w
}

// notify never blocks the FSM.
func (ws *watchers) notify(k Kinds) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for w := range ws.set {
		if hit := w.mask & k; hit != 0 {
			w.mu.Lock()
			w.got |= hit
			w.mu.Unlock()
			select {
			case w.ch <- struct{}{}:
			default:
			}
		}
	}
}
