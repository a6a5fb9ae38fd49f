package registry

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// recorder is a Conn that keeps what it is given.
type recorder struct {
	mu  sync.Mutex
	got [][]byte
}

func (r *recorder) Deliver(ev *Events) {
	r.mu.Lock()
	r.got = append(r.got, bytes.Clone(ev.Frames))
	r.mu.Unlock()
}
func (r *recorder) EndSession(parleyv1.ErrorCode, string) {}
func (r *recorder) Shutdown()                             {}
func (r *recorder) P2PClosed(string)                      {}

// Every connection gets every batch, whole and in order, however many
// goroutines share the writing (a few, one, more connections than chunks).
func TestFanOutReachesAll(t *testing.T) {
	for _, n := range []int{1, fanOutChunk - 1, fanOutChunk + 1, 5 * fanOutChunk} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rs := make([]*recorder, n)
			conns := make([]Conn, n)
			for i := range rs {
				rs[i] = &recorder{}
				conns[i] = rs[i]
			}
			for b := range 3 {
				fanOut(conns, &Events{Frames: fmt.Appendf(nil, "batch %d", b), N: 1})
			}
			for i, r := range rs {
				if len(r.got) != 3 {
					t.Fatalf("connection %d got %d batches, want 3", i, len(r.got))
				}
				for b, g := range r.got {
					if want := fmt.Sprintf("batch %d", b); string(g) != want {
						t.Fatalf("connection %d batch %d = %q, want %q", i, b, g, want)
					}
				}
			}
		})
	}
}
