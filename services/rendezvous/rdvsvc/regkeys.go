package rdvsvc

import (
	"sync"

	"github.com/pion/stun/v3"

	"github.com/parleychat/parley/libs/proto/internalv1"
)

// regKeys is this replica's copy of the live sessions' register keys,
// kept by the sweep's watch of the bucket, so that the STUN read loops
// can check a registration's MESSAGE-INTEGRITY before it costs a store
// read: a flood of forged registrations for live sessions is answered 401
// there, and one for a session the copy does not know (a made-up id, or
// one opened a moment ago that the watch has not delivered yet) reaches
// the workers only within missRate.
type regKeys struct {
	mu    sync.RWMutex
	ready bool // the watch delivered the bucket's initial values
	keys  map[string]sessionKeys
}

// sessionKeys are what regKeys keeps of a session.
type sessionKeys struct {
	register [2][]byte // registerKey of sides a and b (nil: may not register)
	nonce    []byte    // the record's nonce key (registrationNonce)
}

// missRate and missBurst bound the registrations a second that the copy
// cannot vouch for and that go to the store all the same (over all
// sources; the rest are dropped as busy and retransmitted).
const (
	missRate  = 100
	missBurst = 200
)

// reset empties the copy (a new watch replays the bucket).
func (k *regKeys) reset() {
	k.mu.Lock()
	k.ready, k.keys = false, make(map[string]sessionKeys)
	k.mu.Unlock()
}

// synced marks the initial values delivered.
func (k *regKeys) synced() {
	k.mu.Lock()
	k.ready = true
	k.mu.Unlock()
}

// put records rec's keys, or forgets a closed session.
func (k *regKeys) put(id string, rec *internalv1.P2PRecord) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys = make(map[string]sessionKeys)
	}
	if rec.State == closed {
		delete(k.keys, id)
		return
	}
	k.keys[id] = sessionKeys{register: [2][]byte{registerKey(rec, sideA), registerKey(rec, sideB)}, nonce: rec.GetNonceKey()}
}

// forget drops a deleted session.
func (k *regKeys) forget(id string) {
	k.mu.Lock()
	delete(k.keys, id)
	k.mu.Unlock()
}

// verdict is what the copy says of a registration.
type verdict int

const (
	unknown verdict = iota // not in the copy, or its side may not register yet: ask the store
	genuine                // its MESSAGE-INTEGRITY checks with the side's key
	forged                 // the side's key is known and it does not check: 401
)

// check judges req, a registration for side of session id; for a genuine
// one it also returns the side's register key and the session's nonce key.
func (k *regKeys) check(id, side string, req *stun.Message) (v verdict, key, nonceKey []byte) {
	i := 0
	if side == sideB {
		i = 1
	}
	k.mu.RLock()
	keys, ok := k.keys[id]
	ready := k.ready
	k.mu.RUnlock()
	switch {
	case !ready || !ok || keys.register[i] == nil:
		return unknown, nil, nil
	case stun.MessageIntegrity(keys.register[i]).Check(req) != nil:
		return forged, nil, nil
	}
	return genuine, keys.register[i], keys.nonce
}
