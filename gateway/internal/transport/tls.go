package transport

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/parleychat/parley/protocol/wire"
)

// NewTLSStream runs the server side of the TLS handshake on c within
// timeout (reads and writes alike: a client that stops reading mid-handshake
// is as stuck as one that stops writing) and returns the stream over it. On
// an error the caller closes c.
//
// Call it on a goroutine of its own, not on the connection's reader: the
// handshake (crypto/tls, the X25519MLKEM768 key exchange) needs about 8 KiB
// of stack, and a goroutine's stack, once grown, is only halved by the
// garbage collector while it uses less than a quarter of it, so the
// reader of an idle connection would keep 4 KiB rather than 2.
//
// The stream parks an idle reader on the socket itself rather than inside
// tls.Conn.Read (see rawWait), so the reader's stack stays at its 2 KiB
// minimum too.
func NewTLSStream(c net.Conn, conf *tls.Config, maxFrame uint32, timeout time.Duration) (*Stream, error) {
	under := c
	var w *rawWait
	if tc, ok := c.(*net.TCPConn); ok {
		// Not a connection that came with a PROXY header: its reader may
		// hold bytes read ahead of the socket.
		if raw, err := tc.SyscallConn(); err == nil {
			w = &rawWait{Conn: c, raw: raw}
			under = w
		}
	}
	tc := tls.Server(under, conf)
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	s := &Stream{c: tc, r: *wire.NewReader(tc, maxFrame), kind: "tls", wait: w}
	return s, nil
}

// errWouldBlock is what rawWait returns to crypto/tls, in probe mode, for
// a read the socket cannot satisfy now. It is a temporary net.Error, so
// tls.Conn keeps its state (and any partial record it holds) and returns
// it from Read; the stream then waits for the socket and reads again.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tls read would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// rawWait is the TCP connection under a server tls.Conn. In probe mode its
// Read never waits: it reads what the socket holds or fails with
// errWouldBlock. Otherwise it is the connection itself.
//
// Why: an idle connection's reader is parked in a read, and the stack of
// that read stays with the connection for its life. Parked in
// tls.Conn.Read (through record reading, bytes.Buffer.ReadFrom and the
// net.Conn read) it needs more than 2 KiB, and the runtime doubles the
// stack to 4 KiB; parked on the socket directly (waitReadable, as deep as
// a plain TCP read) it fits in 2 KiB.
type rawWait struct {
	net.Conn
	raw syscall.RawConn
	// probe is set by the reader goroutine around its own tls.Conn.Read
	// calls; only that goroutine reads through this connection (writes
	// from the flush goroutine do not look at it).
	probe bool
}

func (w *rawWait) Read(b []byte) (int, error) {
	if !w.probe {
		return w.Conn.Read(b)
	}
	var n int
	var rerr error
	err := w.raw.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), b)
			if rerr != syscall.EINTR {
				break
			}
		}
		return true // never wait here: waitReadable does
	})
	switch {
	case err != nil:
		return 0, err
	case rerr == syscall.EAGAIN:
		return 0, errWouldBlock
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: w.LocalAddr(), Addr: w.RemoteAddr(), Err: rerr}
	case n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// waitReadable blocks until the socket has something to read (or its end,
// or an error), consuming nothing, or until the read deadline passes (its
// error: a timeout).
func (w *rawWait) waitReadable() error {
	return w.raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN // data, the end or an error: the read reports it
	})
}

// readFrame is ReadFrame over TLS: the frame is read on a goroutine of
// its own (offStack) once crypto/tls has its first byte, the reader
// parking on the socket (waitReadable) until then.
//
//go:noinline
func (s *Stream) readFrame() (*[]byte, error) {
	for {
		var raw *[]byte
		err := s.offStack(func() error {
			if err := s.probe(); err != nil {
				return err
			}
			var err error
			raw, err = s.r.ReadRaw()
			return err
		})
		if !errors.Is(err, errWouldBlock) {
			return raw, err
		}
		if err := s.wait.waitReadable(); err != nil {
			return nil, err
		}
	}
}

// await is Wait over TLS: it blocks until the next frame's first byte has
// been read ahead (wire.Reader.Wait), parking on the socket while crypto/tls
// has nothing buffered to give. It returns what Wait returns.
//
//go:noinline
func (s *Stream) await() error {
	for {
		err := s.offStack(s.probe)
		if !errors.Is(err, errWouldBlock) {
			return err
		}
		if err := s.wait.waitReadable(); err != nil {
			return err
		}
	}
}

// probe reads the next frame's first byte ahead without waiting for the
// socket: errWouldBlock if crypto/tls has no whole record buffered and the
// socket has nothing more.
func (s *Stream) probe() error {
	s.wait.probe = true
	err := s.r.Wait()
	s.wait.probe = false
	return err
}

// offStack runs f, a read through crypto/tls, on a goroutine of its own and
// waits for it. Record decryption needs more stack than a goroutine starts
// with; run on the reader, it would double the reader's stack for the
// connection's whole life (an idle reader's stack is not shrunk back). A
// goroutine per record read is the price: reads are the client's
// requests, far fewer than the events written to it.
func (s *Stream) offStack(f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	return <-done
}
