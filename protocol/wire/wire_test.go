package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/protocol/parleyv1"
)

func hello() *parleyv1.Frame {
	return &parleyv1.Frame{RequestId: 1, Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{Versions: []uint32{1}, Client: "test/1"}}}
}

func TestRoundTrip(t *testing.T) {
	frames := []*parleyv1.Frame{
		hello(),
		{RequestId: 7, Body: &parleyv1.Frame_Login{Login: &parleyv1.LoginRequest{Username: "alice", Password: "密码 with emoji 🎉\nand lines"}}},
		{Body: &parleyv1.Frame_PresenceChange{PresenceChange: &parleyv1.PresenceChange{User: &parleyv1.OnlineUser{UserId: "u1", Username: "bob"}, Online: true, Seq: 42}}},
		ErrorFrame(3, parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS, "bad", false),
	}
	var buf bytes.Buffer
	for _, f := range frames {
		if err := WriteFrame(&buf, f); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(&buf, DefaultMaxFrameSize)
	for i, want := range frames {
		got, err := r.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("frame %d: got %v want %v", i, got, want)
		}
	}
	if _, err := r.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after last frame: %v, want EOF", err)
	}
}

func prefixed(body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	return append(b, body...)
}

func TestReaderErrors(t *testing.T) {
	good, _ := AppendFrame(nil, hello())
	// A Login whose username bytes are not UTF-8: field 11 (login) holding
	// field 1 (username) = 0xff 0xfe.
	login := []byte{0x5a, 0x04, 0x0a, 0x02, 0xff, 0xfe}
	cases := []struct {
		name     string
		in       []byte
		max      uint32
		want     error
		code     parleyv1.ErrorCode
		thenGood bool // the stream stays usable: the next good frame decodes
	}{
		{"oversized prefix", binary.BigEndian.AppendUint32(nil, 0xFFFFFFF0), 1024, ErrFrameTooLarge, parleyv1.ErrorCode_ERROR_CODE_FRAME_TOO_LARGE, false},
		{"just above limit", prefixed(make([]byte, 1025)), 1024, ErrFrameTooLarge, parleyv1.ErrorCode_ERROR_CODE_FRAME_TOO_LARGE, false},
		{"zero length", []byte{0, 0, 0, 0}, 1024, ErrEmptyFrame, parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME, true},
		{"garbage body", prefixed([]byte{0xff, 0xff, 0xff, 0xff, 0xff}), 1024, ErrBadFrame, parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME, true},
		{"no body", prefixed([]byte{0x08, 0x05}), 1024, ErrNoBody, parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME, true},
		{"no body, an unknown scalar", prefixed([]byte{0x08, 0x05, 0xb8, 0x06, 0x01}), 1024, ErrNoBody, parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME, true},
		// Field 99 (a body member of a later schema) holding a message.
		{"unknown body", prefixed([]byte{0x08, 0x05, 0x9a, 0x06, 0x02, 0x08, 0x01}), 1024, ErrUnknownBody, parleyv1.ErrorCode_ERROR_CODE_UNKNOWN_REQUEST, true},
		{"invalid utf-8", prefixed(login), 1024, ErrInvalidUTF8, parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8, true},
		{"truncated body", []byte{0, 0, 0, 10, 1, 2}, 1024, io.ErrUnexpectedEOF, parleyv1.ErrorCode_ERROR_CODE_INTERNAL, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]byte(nil), tc.in...)
			if tc.thenGood {
				in = append(in, good...)
			}
			r := NewReader(bytes.NewReader(in), tc.max)
			_, err := r.ReadFrame()
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if got := CodeOf(err); got != tc.code {
				t.Fatalf("code = %v, want %v", got, tc.code)
			}
			if tc.thenGood {
				f, err := r.ReadFrame()
				if err != nil || f.GetHello() == nil {
					t.Fatalf("next frame after recoverable error: %v %v", f, err)
				}
			}
		})
	}
}

// TestOversizedPrefixAllocatesNothing checks the limit is enforced before
// any buffer for the body is allocated: refusing a 2 GiB prefix costs only
// the error value.
func TestOversizedPrefixAllocatesNothing(t *testing.T) {
	in := binary.BigEndian.AppendUint32(nil, 1<<31)
	res := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			r := Reader{r: bytes.NewReader(in), max: 1024}
			if _, err := r.ReadRaw(); !errors.Is(err, ErrFrameTooLarge) {
				b.Fatal(err)
			}
		}
	})
	if per := res.AllocedBytesPerOp(); per > 1024 {
		t.Fatalf("%d bytes allocated to refuse a 2 GiB frame", per)
	}
}

// stalledStream is a peer that sends a length prefix announcing size bytes,
// then sent bytes of the body, then nothing: its next Read records the
// buffer offered for the rest and fails (a read deadline, in the gateway).
type stalledStream struct {
	data    []byte
	offered int // len(p) of the Read that found nothing left
}

func (s *stalledStream) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		s.offered = len(p)
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, s.data)
	s.data = s.data[n:]
	return n, nil
}

func stalled(size uint32, sent int) *stalledStream {
	return &stalledStream{data: append(binary.BigEndian.AppendUint32(nil, size), make([]byte, sent)...)}
}

// TestAnnouncedLengthIsNotAllocated: a length prefix is a claim. A peer
// that announces a 1 MiB frame and sends one byte makes the reader hold a
// small buffer, not 1 MiB, while it waits for the rest (it once allocated
// the whole frame up front: 1,500 such connections took a gateway from 85
// MiB to 1.6 GiB).
func TestAnnouncedLengthIsNotAllocated(t *testing.T) {
	s := stalled(1<<20, 1)
	if _, err := NewReader(s, DefaultMaxFrameSize).ReadRaw(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v", err)
	}
	// The buffer comes from the pool, whose buffers may have grown up to
	// maxPooled: that much, never the announced length.
	if s.offered >= maxPooled {
		t.Errorf("waiting for the rest of a frame with a %d-byte buffer after 1 byte arrived", s.offered+1)
	}
	res := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := NewReader(stalled(1<<20, 1), DefaultMaxFrameSize).ReadRaw(); !errors.Is(err, io.ErrUnexpectedEOF) {
				b.Fatal(err)
			}
		}
	})
	if per := res.AllocedBytesPerOp(); per > 16<<10 {
		t.Errorf("%d bytes allocated for a stalled frame announcing 1 MiB", per)
	}
}

// meteredStream delivers data in chunks of at most chunk bytes and checks
// at every Read that the reader's buffer is at most about twice what has
// arrived of the frame: the room offered is at most what arrived, or the
// pooled buffer it started with (at most maxPooled).
type meteredStream struct {
	t        *testing.T
	data     []byte
	chunk    int
	received int // body bytes delivered so far (after the 4-byte prefix)
}

func (m *meteredStream) Read(p []byte) (int, error) {
	if len(m.data) == 0 {
		return 0, io.EOF
	}
	if len(p) > max(maxPooled, m.received) {
		m.t.Fatalf("reader offers %d bytes of room after %d arrived", len(p), m.received)
	}
	n := copy(p, m.data[:min(len(m.data), m.chunk)])
	m.data = m.data[n:]
	m.received += n
	return n, nil
}

// TestReaderGrowth: frames of every size around the growth steps arrive
// whole and in order whatever the chunking, and the buffer grows only
// with what arrived.
func TestReaderGrowth(t *testing.T) {
	for _, size := range []int{1, 100, 4095, 4096, 4097, 8193, 100_000, 1 << 20} {
		for _, chunk := range []int{1, 1000, 1 << 16} {
			if size >= 100_000 && chunk == 1 {
				continue // a million 1-byte reads prove nothing more
			}
			f := &parleyv1.Frame{RequestId: 3, Body: &parleyv1.Frame_Send{Send: &parleyv1.SendRequest{
				Conversation: "room.public", Text: string(bytes.Repeat([]byte("x"), size))}}}
			one, err := AppendFrame(nil, f)
			if err != nil {
				t.Fatal(err)
			}
			// The prefix arrives in its own read, so received counts body bytes only.
			m := &meteredStream{t: t, data: one[HeaderSize:], chunk: chunk}
			r := NewReader(io.MultiReader(bytes.NewReader(one[:HeaderSize]), m), 2<<20)
			got, err := r.ReadFrame()
			if err != nil {
				t.Fatalf("size %d chunk %d: %v", size, chunk, err)
			}
			if !proto.Equal(got, f) {
				t.Fatalf("size %d chunk %d: frame differs", size, chunk)
			}
		}
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	f := &parleyv1.Frame{RequestId: 9, Body: &parleyv1.Frame_PresenceChange{PresenceChange: &parleyv1.PresenceChange{User: &parleyv1.OnlineUser{UserId: "uabcdefghijklmnopqrst", Username: "alice"}, Online: true, Seq: 1}}}
	var buf []byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf, _ = AppendFrame(buf[:0], f)
		if _, err := Decode(buf[HeaderSize:]); err != nil {
			b.Fatal(err)
		}
	}
}

func seedFrames() []*parleyv1.Frame {
	return []*parleyv1.Frame{
		hello(),
		{RequestId: 2, Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{Versions: []uint32{2}}}},
		{RequestId: 3, Body: &parleyv1.Frame_Register{Register: &parleyv1.RegisterRequest{Username: "alice", Password: "correct horse battery"}}},
		{RequestId: 4, Body: &parleyv1.Frame_Resume{Resume: &parleyv1.ResumeRequest{Token: "v1.abc.def"}}},
		{RequestId: 5, Body: &parleyv1.Frame_Ping{Ping: &parleyv1.Ping{Nonce: 99}}},
		{Body: &parleyv1.Frame_PresenceSnapshot{PresenceSnapshot: &parleyv1.PresenceSnapshot{Users: []*parleyv1.OnlineUser{{UserId: "u1", Username: "张三"}}, Last: true, Seq: 7}}},
	}
}

// TestProtocolDocExample pins the byte layout printed in docs/protocol.md §14.
func TestProtocolDocExample(t *testing.T) {
	cases := []struct {
		f    *parleyv1.Frame
		want []byte
	}{
		{&parleyv1.Frame{RequestId: 1, Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{Versions: []uint32{1}, Client: "x"}}},
			[]byte{0, 0, 0, 0x0a, 0x08, 0x01, 0x12, 0x06, 0x0a, 0x01, 0x01, 0x12, 0x01, 0x78}},
		{&parleyv1.Frame{RequestId: 9, Body: &parleyv1.Frame_Ping{Ping: &parleyv1.Ping{Nonce: 5}}},
			[]byte{0, 0, 0, 6, 0x08, 0x09, 0x2a, 0x02, 0x08, 0x05}},
	}
	for _, tc := range cases {
		got, err := AppendFrame(nil, tc.f)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Fatalf("AppendFrame(%v) = % x, %v; docs say % x", tc.f, got, err, tc.want)
		}
	}
}

// TestReaderWait: Wait returns once the next frame has begun to arrive and
// consumes nothing ReadFrame then misses; at the end of the stream it
// returns io.EOF; a stream that ends after the byte Wait read is a frame
// cut short, as it would be without Wait.
func TestReaderWait(t *testing.T) {
	good, _ := AppendFrame(nil, hello())
	tests := []struct {
		name    string
		in      []byte
		waitErr error // from the first Wait
		readErr error // from the ReadRaw after it; nil: the frame is hello()
	}{
		{"a whole frame", good, nil, nil},
		{"end between frames", nil, io.EOF, io.EOF},
		{"end after one byte", good[:1], nil, io.ErrUnexpectedEOF},
		{"end inside the prefix", good[:3], nil, io.ErrUnexpectedEOF},
		{"end inside the body", good[:len(good)-1], nil, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A reader that hands out one byte per Read, so Wait takes one.
			r := NewReader(oneByteReader{bytes.NewReader(tt.in)}, DefaultMaxFrameSize)
			if err := r.Wait(); !errors.Is(err, tt.waitErr) {
				t.Fatalf("Wait: %v, want %v", err, tt.waitErr)
			}
			if err := r.Wait(); !errors.Is(err, tt.waitErr) {
				t.Fatalf("second Wait: %v, want %v", err, tt.waitErr)
			}
			f, err := r.ReadFrame()
			if !errors.Is(err, tt.readErr) {
				t.Fatalf("ReadFrame: %v, want %v", err, tt.readErr)
			}
			if tt.readErr == nil && !proto.Equal(f, hello()) {
				t.Fatalf("ReadFrame after Wait: %v", f)
			}
		})
	}
}

type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), 1)]) }

// AppendBody frames an encoded body exactly as AppendFrame frames the
// decoded one, and a client decodes the same message from it.
func TestAppendBody(t *testing.T) {
	ev := &parleyv1.MessageEvent{Message: &parleyv1.Message{Conversation: "room.public", Seq: 7, Id: 70, Text: "héllo"}}
	body, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	got := AppendBody([]byte("x"), BodyField("message"), body)
	want, err := AppendFrame([]byte("x"), &parleyv1.Frame{Body: &parleyv1.Frame_Message{Message: ev}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendBody %x, AppendFrame %x", got, want)
	}
	f, err := Decode(got[1+HeaderSize:])
	if err != nil || !proto.Equal(f.GetMessage(), ev) {
		t.Fatalf("decoded %v, %v; want %v", f, err, ev)
	}
	defer func() {
		if recover() == nil {
			t.Error("BodyField of a name the schema lacks did not panic")
		}
	}()
	BodyField("no_such_body")
}

// A deadline that passes before a frame's first byte leaves the Reader
// usable: the frame that arrives next reads whole. One that passes inside a
// frame (part of it consumed) ends the stream: every later Wait and read
// returns that error, even when the rest arrives, because what follows is
// not a frame's start.
func TestReaderDeadlines(t *testing.T) {
	good, _ := AppendFrame(nil, hello())
	timeout := os.ErrDeadlineExceeded
	tests := []struct {
		name   string
		before []byte // what arrives before the deadline passes
		wait   bool   // Wait first (it reads one byte ahead)
		final  bool   // the deadline ends the stream
	}{
		{"between frames", nil, false, false},
		{"between frames, waiting", nil, true, false},
		{"after the byte Wait read", good[:1], true, true},
		{"inside the prefix", good[:2], false, true},
		{"inside the body", good[:len(good)-2], false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The reader sees tt.before, then the deadline, then the
			// rest of the frame.
			rest := good[len(tt.before):]
			r := NewReader(&scriptReader{steps: []step{{data: tt.before}, {err: timeout}, {data: rest}}}, DefaultMaxFrameSize)
			var err error
			if tt.wait {
				err = r.Wait()
				if err == nil {
					_, err = r.ReadRaw()
				}
			} else {
				_, err = r.ReadRaw()
			}
			if !errors.Is(err, timeout) {
				t.Fatalf("first read: %v, want the deadline", err)
			}
			if err := r.Wait(); tt.final != errors.Is(err, timeout) || (!tt.final && err != nil) {
				t.Fatalf("Wait after the deadline: %v (the deadline ends the stream: %v)", err, tt.final)
			}
			f, err := r.ReadFrame()
			switch {
			case tt.final && !errors.Is(err, timeout):
				t.Fatalf("ReadFrame after a deadline inside the frame: %v, %v; want the deadline again", f, err)
			case !tt.final && (err != nil || !proto.Equal(f, hello())):
				t.Fatalf("ReadFrame after a deadline between frames: %v, %v; want the frame", f, err)
			}
		})
	}
}

type step struct {
	data []byte
	err  error
}

// scriptReader returns its steps in order: each step's data (in as many
// reads as it takes), then its error if any; io.EOF after the last.
type scriptReader struct{ steps []step }

func (s *scriptReader) Read(p []byte) (int, error) {
	for len(s.steps) > 0 {
		st := &s.steps[0]
		if len(st.data) > 0 {
			n := copy(p, st.data)
			st.data = st.data[n:]
			return n, nil
		}
		err := st.err
		s.steps = s.steps[1:]
		if err != nil {
			return 0, err
		}
	}
	return 0, io.EOF
}
