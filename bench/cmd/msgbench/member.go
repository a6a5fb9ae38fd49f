package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
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
	errCode   atomic.Int32 // the code of the last Error frame received (a fatal one ends the connection)

	mu      sync.Mutex // guards the fields below
	lats    map[int][]int32
	last    uint64              // the room's highest seq received
	missing map[uint64]struct{} // seqs below last not received yet
	replies map[uint32]chan *parleyv1.HistoryReply
	nextRID uint32
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

// dialMember connects over transport ("tcp" or "tls" to the gateway's TCP
// address, "ws" over WebSocket to its HTTP address), says Hello and
// resumes the session of token with the presence feed off.
func dialMember(ctx context.Context, g *gateway, transport, token string) (*member, rawReader, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	ws := transport == "ws"
	addr := g.tcp
	if ws {
		addr = g.http
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if transport == "tls" {
		// The gateway's self-signed certificate (cluster.startGateway):
		// the benchmark talks to its own server on loopback.
		nc = tls.Client(nc, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	}
	m := &member{conn: nc, ws: ws, lats: map[int][]int32{}, missing: map[uint64]struct{}{},
		replies: map[uint32]chan *parleyv1.HistoryReply{}, nextRID: 1 << 20}
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
	for {
		raw, err := r.ReadRaw()
		if err != nil {
			return
		}
		conv, seq, text, isMsg := messageFields(*raw)
		if !isMsg {
			// Anything else (pings, history replies, errors) is decoded in
			// full.
			f, err := wire.Decode(*raw)
			wire.PutRaw(raw)
			if err != nil {
				return
			}
			switch {
			case f.GetPing() != nil:
				_ = m.send(&parleyv1.Frame{RequestId: f.GetRequestId(), Body: &parleyv1.Frame_Pong{Pong: &parleyv1.Pong{Nonce: f.GetPing().GetNonce()}}})
			case f.GetHistoryReply() != nil || f.GetError() != nil:
				if e := f.GetError(); e != nil {
					m.errCode.Store(int32(e.GetCode()))
				}
				m.mu.Lock()
				ch := m.replies[f.GetRequestId()]
				delete(m.replies, f.GetRequestId())
				m.mu.Unlock()
				if ch != nil {
					ch <- f.GetHistoryReply() // nil for an Error
				}
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
		if !m.arrived(seq, l) {
			continue
		}
		l.recv[id].Add(1)
		m.mu.Lock()
		m.lats[lvl] = append(m.lats[lvl], int32((t-l.starts[id].Load())/1000))
		m.mu.Unlock()
	}
}

// arrived records that seq arrived (live) and reports whether it is new.
// Live events may arrive out of seq order (the messaging service publishes
// after storing, and two sends of one conversation can publish in either
// order): a seq below the highest seen that was missing is late, not a
// duplicate.
func (m *member) arrived(seq uint64, l *level) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.last == 0:
		m.last = seq
	case seq > m.last:
		for s := m.last + 1; s < seq && len(m.missing) < maxMissing; s++ {
			m.missing[s] = struct{}{}
		}
		if seq > m.last+1 {
			l.gaps.Add(int64(seq - m.last - 1))
		}
		m.last = seq
	default:
		if _, ok := m.missing[seq]; !ok {
			l.dups.Add(1)
			return false
		}
		delete(m.missing, seq)
		l.reordered.Add(1)
	}
	return true
}

// repair reads what the member missed from history, as a client does
// (docs/protocol.md §15.3): each run of missing seqs, then everything
// after the highest seq received (events shed at the end of a burst leave
// no later event to show the gap). Each message read that was missing
// counts as repaired for its level. It returns the history requests made.
func (m *member) repair(ctx context.Context, room string, ls *levels) (requests int, err error) {
	m.mu.Lock()
	seqs := make([]uint64, 0, len(m.missing))
	for s := range m.missing {
		seqs = append(seqs, s)
	}
	last := m.last
	m.mu.Unlock()
	slices.Sort(seqs)
	type run struct{ from, to uint64 } // inclusive
	var runs []run
	for _, s := range seqs {
		if n := len(runs); n > 0 && runs[n-1].to+1 == s {
			runs[n-1].to = s
		} else {
			runs = append(runs, run{s, s})
		}
	}
	if last > 0 {
		runs = append(runs, run{last + 1, 0}) // 0: to the end
	}
	for _, rn := range runs {
		after := rn.from - 1
		for rn.to == 0 || after < rn.to {
			limit := uint32(200)
			if rn.to != 0 {
				limit = uint32(min(200, rn.to-after))
			}
			h, err := m.history(ctx, room, after, limit)
			requests++
			if err != nil {
				return requests, err
			}
			for _, msg := range h.GetMessages() {
				seq := msg.GetSeq()
				after = max(after, seq)
				if rn.to != 0 && seq > rn.to {
					break
				}
				if !m.repaired(seq) {
					continue
				}
				if lvl, id, ok := parseText(msg.GetText()); ok {
					if l := ls.get(lvl); l != nil && id < len(l.repaired) {
						l.repaired[id].Add(1)
					}
				}
			}
			if !h.GetMore() || len(h.GetMessages()) == 0 {
				break
			}
		}
	}
	return requests, nil
}

// repaired records that seq was read from history and reports whether it
// was missing (a late live event may have filled it meanwhile).
func (m *member) repaired(seq uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if seq > m.last {
		for s := m.last + 1; s < seq && len(m.missing) < maxMissing; s++ {
			m.missing[s] = struct{}{}
		}
		m.last = seq
		return true
	}
	if _, ok := m.missing[seq]; ok {
		delete(m.missing, seq)
		return true
	}
	return false
}

// history makes one HistoryRequest{after_seq} and waits for its reply.
func (m *member) history(ctx context.Context, room string, after uint64, limit uint32) (*parleyv1.HistoryReply, error) {
	ch := make(chan *parleyv1.HistoryReply, 1)
	m.mu.Lock()
	m.nextRID++
	rid := m.nextRID
	m.replies[rid] = ch
	m.mu.Unlock()
	if err := m.send(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_History{History: &parleyv1.HistoryRequest{
		Conversation: room, AfterSeq: &after, Limit: limit}}}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case h := <-ch:
		if h == nil {
			return nil, fmt.Errorf("history after %d: error %d", after, m.errCode.Load())
		}
		return h, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("history after %d: %w", after, ctx.Err())
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

// pingEvery pings every member each 20 s until done is closed: the
// gateway closes a connection it hears nothing from for its idle timeout.
func pingEvery(members []*member, done <-chan struct{}) {
	t := time.NewTicker(20 * time.Second)
	defer t.Stop()
	for nonce := uint64(1); ; nonce++ {
		select {
		case <-done:
			return
		case <-t.C:
			for _, m := range members {
				m.ping(nonce)
			}
		}
	}
}

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
