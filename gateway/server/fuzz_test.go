package server_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/parleychat/parley/protocol/wire"
)

// FuzzHandshake feeds arbitrary bytes to a real gateway as a client's first
// bytes on a TCP connection, then half-closes. Whatever the input, the
// gateway must not crash, must answer only with well-formed frames, must
// answer anything but a Hello with a fatal Error as its last frame, and must
// close the connection. Seeds: testdata/fuzz/FuzzHandshake.
func FuzzHandshake(f *testing.F) {
	e := startGateway(f, nil)
	addr := e.srv.TCPAddr().String()
	f.Fuzz(func(t *testing.T, input []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		// The gateway may close before reading everything; a failed write
		// is fine.
		if _, err := c.Write(input); err == nil {
			_ = c.(*net.TCPConn).CloseWrite()
		}
		r := wire.NewReader(c, 64<<20)
		var frames int
		var welcomed, fatal bool
		for {
			fr, err := r.ReadFrame()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("gateway did not close the connection (after %d frames)", frames)
				}
				if errors.Is(err, wire.ErrBadFrame) || errors.Is(err, wire.ErrFrameTooLarge) {
					t.Fatalf("gateway sent a malformed frame: %v", err)
				}
				break // EOF or reset: closed
			}
			if fatal {
				t.Fatalf("frame after a fatal error: %v", fr)
			}
			frames++
			switch {
			case frames == 1 && fr.GetWelcome() != nil:
				welcomed = true
			case fr.GetError().GetFatal():
				fatal = true
			case !welcomed:
				t.Fatalf("first frame %v is neither Welcome nor a fatal Error", fr)
			}
		}
	})
}
