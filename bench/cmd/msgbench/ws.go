package main

import (
	"context"
	"encoding/binary"
	"io"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/parleychat/parley/protocol/wire"
)

// memberConn is what a member reads and writes: a TCP connection, or a
// WebSocket seen as the stream form (wsStream).
type memberConn interface {
	io.ReadWriteCloser
	SetDeadline(t time.Time) error
}

// wsStream presents a Parley WebSocket (docs/protocol.md §3: one frame per
// binary message, no length prefix) as the stream form (§2), so a member
// reads and writes it like TCP: Read returns each message with its 4-byte
// length prefix, Write sends each whole length-prefixed frame as one
// message.
type wsStream struct {
	c *websocket.Conn

	rbuf []byte // the rest of the message being read, prefix included

	wmu  sync.Mutex // guards wbuf
	wbuf []byte     // written bytes not yet a whole frame

	dmu      sync.Mutex // guards deadline
	deadline time.Time
}

func dialWS(ctx context.Context, url string) (*wsStream, error) {
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(wire.DefaultMaxFrameSize)
	return &wsStream{c: c}, nil
}

func (s *wsStream) ctx() (context.Context, context.CancelFunc) {
	s.dmu.Lock()
	d := s.deadline
	s.dmu.Unlock()
	if d.IsZero() {
		return context.Background(), func() {}
	}
	return context.WithDeadline(context.Background(), d)
}

func (s *wsStream) Read(p []byte) (int, error) {
	if len(s.rbuf) == 0 {
		ctx, cancel := s.ctx()
		_, b, err := s.c.Read(ctx)
		cancel()
		if err != nil {
			return 0, err
		}
		s.rbuf = binary.BigEndian.AppendUint32(make([]byte, 0, wire.HeaderSize+len(b)), uint32(len(b)))
		s.rbuf = append(s.rbuf, b...)
	}
	n := copy(p, s.rbuf)
	s.rbuf = s.rbuf[n:]
	return n, nil
}

func (s *wsStream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.wbuf = append(s.wbuf, p...)
	for len(s.wbuf) >= wire.HeaderSize {
		n := wire.HeaderSize + int(binary.BigEndian.Uint32(s.wbuf))
		if len(s.wbuf) < n {
			break
		}
		ctx, cancel := s.ctx()
		err := s.c.Write(ctx, websocket.MessageBinary, s.wbuf[wire.HeaderSize:n])
		cancel()
		if err != nil {
			return 0, err
		}
		s.wbuf = s.wbuf[n:]
	}
	return len(p), nil
}

func (s *wsStream) Close() error { return s.c.CloseNow() }

func (s *wsStream) SetDeadline(t time.Time) error {
	s.dmu.Lock()
	s.deadline = t
	s.dmu.Unlock()
	return nil
}
