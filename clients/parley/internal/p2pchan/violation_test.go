package p2pchan

import (
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/parleychat/parley/protocol/parleyv1"
)

func framed(f *parleyv1.DirectFrame) []byte {
	b, _ := AppendFrame(nil, f)
	return b
}

// waitEnded waits for c to end and returns why.
func waitEnded(t *testing.T, c *Channel) error {
	t.Helper()
	select {
	case <-c.Done():
		return c.Err()
	case <-testCtx(t).Done():
		t.Fatal("the channel did not end")
	}
	return nil
}

func TestProtocolViolations(t *testing.T) {
	chat := func(id, text string) []byte {
		return framed(&parleyv1.DirectFrame{Body: &parleyv1.DirectFrame_Chat{Chat: &parleyv1.DirectChat{Id: id, Text: text}}})
	}
	oversize := binary.BigEndian.AppendUint32(nil, MaxFrameSize+1)
	tests := []struct {
		name   string
		bytes  []byte // written on a's control stream, or on a new stream with fileStream
		file   bool
		finish bool // close the stream after
		want   error
	}{
		{name: "oversize frame", bytes: oversize, want: ErrFrameTooLarge},
		{name: "chat without id", bytes: chat("", "hi")},
		{name: "chat id too long", bytes: chat(strings.Repeat("i", 65), "hi")},
		{name: "chat id with a newline", bytes: chat("a\nb", "hi")},
		{name: "chat text above 16 KiB", bytes: chat("id", strings.Repeat("t", MaxTextBytes+1))},
		{name: "not protobuf", bytes: append(binary.BigEndian.AppendUint32(nil, 3), 0xff, 0xff, 0xff)},
		{name: "invalid UTF-8 in a string", bytes: append(binary.BigEndian.AppendUint32(nil, 6), 0x12, 0x04, 0x12, 0x02, 0xc3, 0x28)},
		{name: "hello again", bytes: framed(&parleyv1.DirectFrame{Body: &parleyv1.DirectFrame_Hello{Hello: &parleyv1.DirectHello{DeviceId: "x"}}})},
		{name: "file offer on the control stream", bytes: framed(&parleyv1.DirectFrame{Body: &parleyv1.DirectFrame_FileOffer{FileOffer: &parleyv1.DirectFileOffer{TransferId: "t"}}})},
		{name: "ack without id", bytes: framed(&parleyv1.DirectFrame{Body: &parleyv1.DirectFrame_ChatAck{ChatAck: &parleyv1.DirectChatAck{}}})},
		{name: "call without id", bytes: framed(&parleyv1.DirectFrame{Body: &parleyv1.DirectFrame_Call{Call: &parleyv1.DirectCall{Direct: true}}})},
		{name: "control stream closed", finish: true},
		{name: "half a frame, then closed", bytes: []byte{0, 0, 0, 9, 1}, finish: true},
		{name: "file offer with a short sha256", file: true, bytes: framed(&parleyv1.DirectFrame{Body: &parleyv1.DirectFrame_FileOffer{FileOffer: &parleyv1.DirectFileOffer{TransferId: "t", Name: "n", Size: 1, Sha256: []byte{1, 2}}}})},
		{name: "file stream starting with a chat", file: true, bytes: chat("id", "hi")},
		{name: "oversize frame on a file stream", file: true, bytes: oversize, want: ErrFrameTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newSide(t), newSide(t)
			newSink(t, b)
			ca, cb := connect(t, a, b, nil)
			st := ca.cur.ctrl
			if tc.file {
				var err error
				if st, err = ca.cur.conn.OpenStreamSync(testCtx(t)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := st.Write(tc.bytes); err != nil {
				t.Fatal(err)
			}
			if tc.finish {
				st.Close()
			}
			errB := waitEnded(t, cb)
			if !errors.Is(errB, ErrProtocol) {
				t.Fatalf("b ended with %v, want ErrProtocol", errB)
			}
			if tc.want != nil && !errors.Is(errB, tc.want) {
				t.Fatalf("b ended with %v, want %v", errB, tc.want)
			}
			// a is told why and does not reconnect.
			errA := waitEnded(t, ca)
			if !errors.Is(errA, ErrProtocol) || !strings.Contains(errA.Error(), "peer closed") {
				t.Fatalf("a ended with %v", errA)
			}
			t.Logf("b: %v", errB)
		})
	}
}

func TestUnknownFrameSkipped(t *testing.T) {
	a, b := newSide(t), newSide(t)
	inb := withInbox(b)
	ca, cb := connect(t, a, b, nil)
	// Field 99 of DirectFrame: a frame kind from a newer version.
	unknown := append(binary.BigEndian.AppendUint32(nil, 3), 0x98, 0x06, 0x00)
	if _, err := ca.cur.ctrl.Write(unknown); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Send(testCtx(t), "after"); err != nil {
		t.Fatal(err)
	}
	if len(inb.list()) != 1 || cb.Err() != nil {
		t.Fatalf("after an unknown frame: %v, %v", inb.list(), cb.Err())
	}
}

func TestClose(t *testing.T) {
	a, b := newSide(t), newSide(t)
	ca, cb := connect(t, a, b, nil)
	ca.Close()
	if err := waitEnded(t, cb); !errors.Is(err, ErrPeerClosed) {
		t.Fatalf("b ended with %v, want ErrPeerClosed", err)
	}
	if _, err := cb.Send(testCtx(t), "x"); !errors.Is(err, ErrPeerClosed) {
		t.Errorf("Send after the peer closed: %v", err)
	}
	if _, err := ca.Send(testCtx(t), "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
	if err := ca.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// The socket is released, not closed: a new channel can use it.
	a.cfg.PeerKey, b.cfg.PeerKey = nil, nil
	cb.Close()
	connect(t, a, b, nil)
}

func TestSocketClosed(t *testing.T) {
	for _, closeA := range []bool{true, false} {
		a, b := newSide(t), newSide(t)
		ca, cb := connect(t, a, b, nil)
		c, pc := cb, b.pc
		if closeA {
			c, pc = ca, a.pc
		}
		pc.Close()
		if err := waitEnded(t, c); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("controlling=%v ended with %v, want net.ErrClosed", c.Controlling(), err)
		}
	}
}
