package p2pchan

import (
	"cmp"
	"errors"
	"io"
	"net"
	"slices"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// session is one QUIC connection of a channel and its control stream.
type session struct {
	c          *Channel
	conn       *quic.Conn
	ctrl       *quic.Stream
	wake       chan struct{} // pokes writeLoop; capacity 1
	peerClient string

	// Guarded by c.mu:
	frames   []*parleyv1.DirectFrame // acks and call frames waiting for writeLoop
	sentUpTo uint64                  // outbox entries up to this seq were written on this connection
}

func (c *Channel) newSession(conn *quic.Conn, ctrl *quic.Stream) *session {
	return &session{c: c, conn: conn, ctrl: ctrl, wake: make(chan struct{}, 1)}
}

// hello exchanges DirectHello on the control stream (§20.6): the client
// (first) writes and then reads, the server reads and then writes. A
// hello naming another device than the certificate's key is a violation;
// anything else failing just drops this connection.
func (s *session) hello(first bool) error {
	c := s.c
	mine := &parleyv1.DirectFrame{Body: &parleyv1.DirectFrame_Hello{Hello: &parleyv1.DirectHello{
		DeviceId: deviceIDOf(c.cfg.Key), Client: c.cfg.Client,
	}}}
	fail := func(err error) error {
		if errors.Is(err, ErrFrameTooLarge) {
			err = violation("hello: %w", err)
		}
		if errors.Is(err, ErrProtocol) {
			s.conn.CloseWithError(codeProtocol, truncate(err.Error(), 256))
			c.violate(err)
		} else {
			s.conn.CloseWithError(codeReplaced, "no hello")
		}
		return err
	}
	if first {
		if err := WriteFrame(s.ctrl, mine); err != nil {
			return fail(err)
		}
	}
	s.ctrl.SetReadDeadline(time.Now().Add(c.cfg.HandshakeTimeout))
	f, err := ReadFrame(s.ctrl)
	s.ctrl.SetReadDeadline(time.Time{})
	if err != nil {
		return fail(err)
	}
	h := f.GetHello()
	if h == nil {
		return fail(violation("the first frame on the control stream is %s, not a hello", kind(f)))
	}
	if err := checkHello(h, c.peerDevice); err != nil {
		return fail(err)
	}
	s.peerClient = h.GetClient()
	if !first {
		if err := WriteFrame(s.ctrl, mine); err != nil {
			return fail(err)
		}
	}
	return nil
}

func (s *session) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// enqueue queues a frame (an ack, a call) for writeLoop. The reader never
// writes itself: a reader blocked on a full stream while the peer's reader
// is blocked the same way would deadlock both.
func (s *session) enqueue(f *parleyv1.DirectFrame) {
	s.c.mu.Lock()
	s.frames = append(s.frames, f)
	n := len(s.frames)
	s.c.mu.Unlock()
	if n > maxQueuedFrames {
		s.c.violate(violation("the peer does not read its control stream (%d frames queued)", n))
		return
	}
	s.poke()
}

// writeLoop is the only writer of the control stream: queued frames, then
// every outbox message this connection has not carried yet, in order. It
// ends with the connection.
func (s *session) writeLoop() {
	c := s.c
	var buf []byte
	for {
		select {
		case <-s.wake:
		case <-s.conn.Context().Done():
			return
		}
		for {
			c.mu.Lock()
			frames := s.frames
			s.frames = nil
			// The outbox is in seq order: skip what this connection carried.
			first, _ := slices.BinarySearchFunc(c.outbox, s.sentUpTo+1, func(m *outMsg, seq uint64) int { return cmp.Compare(m.seq, seq) })
			for _, m := range c.outbox[first:] {
				frames = append(frames, m.frame())
				s.sentUpTo = m.seq
			}
			c.mu.Unlock()
			if len(frames) == 0 {
				break
			}
			buf = buf[:0]
			for i, f := range frames {
				var err error
				if buf, err = AppendFrame(buf, f); err != nil {
					c.log.Error("p2p frame not sent", "err", err)
					continue
				}
				if len(buf) >= 64<<10 || i == len(frames)-1 {
					if _, err := s.ctrl.Write(buf); err != nil {
						return // the connection is going; the next resends
					}
					buf = buf[:0]
				}
			}
		}
	}
}

// readLoop reads the control stream until the connection ends.
func (s *session) readLoop() {
	c := s.c
	for {
		f, err := ReadFrame(s.ctrl)
		if err != nil {
			if s.connGone(err) {
				return
			}
			switch {
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				err = violation("the peer closed the control stream")
			case errors.Is(err, ErrFrameTooLarge):
				err = violation("control stream: %w", err)
			case !errors.Is(err, ErrProtocol):
				err = violation("control stream: %v", err)
			}
			c.violate(err)
			return
		}
		switch b := f.GetBody().(type) {
		case *parleyv1.DirectFrame_Chat:
			if err := checkChat(b.Chat); err != nil {
				c.violate(err)
				return
			}
			if c.receiveChat(b.Chat) {
				s.enqueue(&parleyv1.DirectFrame{Body: &parleyv1.DirectFrame_ChatAck{ChatAck: &parleyv1.DirectChatAck{Id: b.Chat.GetId()}}})
			}
		case *parleyv1.DirectFrame_ChatAck:
			if err := checkID("chat_ack id", b.ChatAck.GetId()); err != nil {
				c.violate(violation("%v", err))
				return
			}
			c.acked(b.ChatAck.GetId())
		case *parleyv1.DirectFrame_Call:
			if err := checkCall(b.Call); err != nil {
				c.violate(err)
				return
			}
			if c.cfg.OnCall != nil {
				c.cfg.OnCall(Call{ID: b.Call.GetCallId(), Direct: b.Call.GetDirect()})
			}
		case nil:
			// A frame kind newer than this implementation: skipped, as
			// protobuf skips unknown fields.
		default:
			c.violate(violation("%s on the control stream", kind(f)))
			return
		}
	}
}

// connGone reports whether err is the connection ending (not the peer
// misbehaving on a live one).
func (s *session) connGone(err error) bool {
	return s.conn.Context().Err() != nil || s.c.ctx.Err() != nil || isConnErr(err)
}

// isConnErr reports whether err is a QUIC connection's error (it was
// closed, timed out, reset), which every stream of it returns.
func isConnErr(err error) bool {
	var (
		ae *quic.ApplicationError
		te *quic.TransportError
		it *quic.IdleTimeoutError
		sr *quic.StatelessResetError
		ht *quic.HandshakeTimeoutError
	)
	return errors.As(err, &ae) || errors.As(err, &te) || errors.As(err, &it) || errors.As(err, &sr) ||
		errors.As(err, &ht) || errors.Is(err, net.ErrClosed)
}

// acceptStreams takes the peer's file streams until the connection ends.
func (s *session) acceptStreams() {
	for {
		st, err := s.conn.AcceptStream(s.conn.Context())
		if err != nil {
			return
		}
		s.c.wg.Go(func() { s.receiveFile(st) })
	}
}

// readDatagrams hands audio datagrams to OnAudio until the connection ends.
func (s *session) readDatagrams() {
	for {
		b, err := s.conn.ReceiveDatagram(s.conn.Context())
		if err != nil {
			return
		}
		a, err := ParseAudio(b)
		if err != nil || s.c.cfg.OnAudio == nil {
			continue // §20.7: anything else is dropped
		}
		s.c.cfg.OnAudio(a)
	}
}
