package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// member is a room member that speaks the wire protocol directly (like
// connload) rather than through the SDK: a thousand of them must not cost
// the load generator more than the gateway they measure. It checks the
// room's seq order itself (the SDK would repair gaps from history; a raw
// member shows what live delivery alone brought).
type member struct {
	conn      net.Conn
	ws        bool       // over WebSocket (else the TCP stream)
	transport int        // index in -room-transports
	wmu       sync.Mutex // guards writes to conn
	closed    atomic.Bool

	mu   sync.Mutex // guards lats
	lats map[int][]int32
}

// rawReader reads a member's frames: wire.Reader on TCP, wsReader on
// WebSocket.
type rawReader interface {
	ReadRaw() (*[]byte, error)
}

func readFrame(r rawReader) (*parleyv1.Frame, error) {
	b, err := r.ReadRaw()
	if err != nil {
		return nil, err
	}
	defer wire.PutRaw(b)
	return wire.Decode(*b)
}

// dialMember connects (to the gateway's TCP address, or over WebSocket to
// its HTTP address), says Hello and resumes the session of token with the
// presence feed off.
func dialMember(ctx context.Context, g *gateway, ws bool, token string) (*member, rawReader, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	addr := g.tcp
	if ws {
		addr = g.http
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	m := &member{conn: nc, ws: ws, lats: map[int][]int32{}}
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	fail := func(err error) (*member, rawReader, error) { nc.Close(); return nil, nil, err }
	var r rawReader
	if ws {
		br, err := wsUpgrade(nc, addr)
		if err != nil {
			return fail(err)
		}
		r = &wsReader{r: br, max: wire.DefaultMaxFrameSize}
	} else {
		r = wire.NewReader(bufio.NewReaderSize(nc, 32<<10), wire.DefaultMaxFrameSize)
	}
	if err := m.send(&parleyv1.Frame{RequestId: 1, Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{
		Versions: []uint32{wire.Version}, Client: "msgbench"}}}); err != nil {
		return fail(err)
	}
	if f, err := readFrame(r); err != nil || f.GetWelcome() == nil {
		return fail(fmt.Errorf("handshake: %v %v", f, err))
	}
	if err := m.send(&parleyv1.Frame{RequestId: 2, Body: &parleyv1.Frame_Resume{Resume: &parleyv1.ResumeRequest{
		Token: token, Options: &parleyv1.ClientOptions{Device: "msgbench", SkipPresenceFeed: true}}}}); err != nil {
		return fail(err)
	}
	for {
		f, err := readFrame(r)
		if err != nil {
			return fail(err)
		}
		if f.GetRequestId() != 2 {
			continue
		}
		if e := f.GetError(); e != nil {
			return fail(fmt.Errorf("resume: %s", e.GetMessage()))
		}
		_ = nc.SetDeadline(time.Time{})
		return m, r, nil
	}
}

func (m *member) send(f *parleyv1.Frame) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	if !m.ws {
		return wire.WriteFrame(m.conn, f)
	}
	b, err := wire.Marshal(f)
	if err != nil {
		return err
	}
	_, err = m.conn.Write(appendWSFrame(nil, b))
	return err
}

// read is the member's reader: it answers pings and records room messages
// until the connection closes. last is the room's seq the member is known
// to have (the warm-up sets it).
func (m *member) read(r rawReader, room string, ls *levels) {
	defer m.closed.Store(true)
	var last uint64
	missing := map[uint64]struct{}{} // seqs below last not received yet
	for {
		raw, err := r.ReadRaw()
		if err != nil {
			return
		}
		conv, seq, text, isMsg := messageFields(*raw)
		if !isMsg {
			// Anything else (pings) is decoded in full.
			f, err := wire.Decode(*raw)
			wire.PutRaw(raw)
			if err != nil {
				return
			}
			if p := f.GetPing(); p != nil {
				_ = m.send(&parleyv1.Frame{RequestId: f.GetRequestId(), Body: &parleyv1.Frame_Pong{Pong: &parleyv1.Pong{Nonce: p.GetNonce()}}})
			}
			continue
		}
		if string(conv) != room {
			wire.PutRaw(raw)
			continue
		}
		t := now()
		lvl, id, ok := parseText(string(text))
		wire.PutRaw(raw)
		l := ls.get(lvl)
		if !ok || l == nil || id >= len(l.recv) {
			continue
		}
		// Live events may arrive out of seq order (the messaging
		// service publishes after storing, and two sends of one
		// conversation can publish in either order): a seq below the
		// highest seen that was missing is late, not a duplicate.
		switch {
		case last == 0:
			last = seq
		case seq > last:
			for s := last + 1; s < seq && len(missing) < maxMissing; s++ {
				missing[s] = struct{}{}
			}
			if seq > last+1 {
				l.gaps.Add(int64(seq - last - 1))
			}
			last = seq
		default:
			if _, ok := missing[seq]; !ok {
				l.dups.Add(1)
				continue
			}
			delete(missing, seq)
			l.reordered.Add(1)
		}
		l.recv[id].Add(1)
		m.mu.Lock()
		m.lats[lvl] = append(m.lats[lvl], int32((t-l.starts[id].Load())/1000))
		m.mu.Unlock()
	}
}

// Field numbers of the few fields a member reads (protocol/proto/parley/v1/parley.proto).
const (
	frameMessage        = 33 // Frame.message (MessageEvent)
	messageEventMessage = 1  // MessageEvent.message
	messageConversation = 1
	messageSeq          = 2
	messageTextField    = 7
)

// messageFields reads a frame's message event's conversation, seq and text
// straight from the encoded bytes, without decoding the rest: a thousand
// members decoding every room message in full (allocating each field) was
// a third of the load generator's CPU, and load-generator CPU is taken
// from the servers it measures. ok is false for any other frame (or a
// malformed one), which the caller decodes in full.
func messageFields(frame []byte) (conv []byte, seq uint64, text []byte, ok bool) {
	ev, found := field(frame, frameMessage)
	if !found {
		return nil, 0, nil, false
	}
	msg, found := field(ev, messageEventMessage)
	if !found {
		return nil, 0, nil, false
	}
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return nil, 0, nil, false
		}
		msg = msg[n:]
		switch {
		case num == messageSeq && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(msg)
			if n < 0 {
				return nil, 0, nil, false
			}
			seq, msg = v, msg[n:]
		case (num == messageConversation || num == messageTextField) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return nil, 0, nil, false
			}
			if num == messageConversation {
				conv = v
			} else {
				text = v
			}
			msg = msg[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, msg)
			if n < 0 {
				return nil, 0, nil, false
			}
			msg = msg[n:]
		}
	}
	return conv, seq, text, true
}

// field returns the bytes of the first length-delimited field num in b.
func field(b []byte, num protowire.Number) ([]byte, bool) {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return nil, false
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			return v, l >= 0
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return nil, false
		}
		b = b[l:]
	}
	return nil, false
}

// maxMissing bounds a member's set of seqs it waits for.
const maxMissing = 100000

// ping keeps the connection from the gateway's idle timeout.
func (m *member) ping(nonce uint64) {
	if !m.closed.Load() {
		_ = m.send(&parleyv1.Frame{RequestId: uint32(nonce%1000 + 10), Body: &parleyv1.Frame_Ping{Ping: &parleyv1.Ping{Nonce: nonce}}})
	}
}

// takeLats returns (and forgets) the member's latencies for a level, in
// nanoseconds.
func (m *member) takeLats(lvl int) []int64 {
	m.mu.Lock()
	v := m.lats[lvl]
	delete(m.lats, lvl)
	m.mu.Unlock()
	out := make([]int64, len(v))
	for i, us := range v {
		out[i] = int64(us) * 1000
	}
	return out
}
