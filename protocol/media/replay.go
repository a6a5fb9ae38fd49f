package media

// WindowSize is how far behind the newest sequence number a ReplayWindow
// still accepts a packet: reordering by fewer than WindowSize packets is
// tolerated, older packets are dropped.
const WindowSize = 1024

const (
	blockBits = 64
	// One block more than the window (RFC 6479's redundant block), so
	// sliding forward clears whole blocks and never the window's own bits.
	blocks = WindowSize/blockBits + 1
)

// ReplayWindow accepts each sequence number of one stream in one direction
// at most once. It is the bitmap sliding window of RFC 6479 as WireGuard
// uses it (wireguard-go's replay.Filter): the bits of the newest WindowSize
// numbers in a ring of 64-bit blocks, one block more than the window, so
// moving forward only zeroes the blocks it enters.
//
// Sequence numbers are compared as serial numbers (RFC 1982, 32 bits): s is
// newer than the newest accepted n when s-n mod 2^32 is in [1, 2^31), so the
// window carries on across the wrap from 0xFFFFFFFF to 0. The window counts
// the wraps, and once the numbers it has accepted would span 2^32 (a sender
// jumping by nearly 2^31 three times, or 2.7 years of packets) it accepts
// nothing newer: a number accepted again after a full turn would be a nonce
// reused under the listeners' keys when the server re-seals it. The sender
// then needs a new key and stream (it rejoins the call).
//
// The first number accepted initialises the window; the numbers up to
// WindowSize-1 before it are then accepted once each, as late arrivals.
// The zero value is ready to use. A ReplayWindow is not safe for concurrent
// use.
type ReplayWindow struct {
	// top is the newest accepted number, extended to 64 bits by counting
	// wraps; the first is 2^32 + seq, so top == 0 means "none yet".
	top uint64
	// limit is the first extended number not to accept: 2^32 past the
	// oldest the window could ever accept.
	limit uint64
	bits  [blocks]uint64
}

// Accept reports whether seq is new on the stream and records it.
//
// Call it only for a packet that Open authenticated, and drop the packet
// when it returns false: a forged packet must not move the window, or it
// could push the genuine ones out of it.
func (w *ReplayWindow) Accept(seq uint32) bool {
	if w.top == 0 {
		w.top = 1<<32 | uint64(seq)
		w.limit = w.top - (WindowSize - 1) + 1<<32
		w.bits = [blocks]uint64{}
		return w.mark(w.top)
	}
	d := int32(seq - uint32(w.top)) // RFC 1982: > 0 newer, <= 0 not
	n := w.top + uint64(int64(d))
	if d > 0 {
		if n >= w.limit {
			return false
		}
		cur, next := w.top/blockBits, n/blockBits
		for i := uint64(1); i <= next-cur && i <= blocks; i++ {
			w.bits[(cur+i)%blocks] = 0
		}
		w.top = n
	} else if w.top-n >= WindowSize {
		return false
	}
	return w.mark(n)
}

// mark sets n's bit, reporting whether it was clear.
func (w *ReplayWindow) mark(n uint64) bool {
	i, bit := (n/blockBits)%blocks, uint64(1)<<(n%blockBits)
	if w.bits[i]&bit != 0 {
		return false
	}
	w.bits[i] |= bit
	return true
}
