package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/libs/proto/parleyv1"
	"github.com/parleychat/parley/libs/wire"
)

// member is a room member that speaks the wire protocol directly (like
// connload) rather than through the SDK: a thousand of them must not cost
// the load generator more than the gateway they measure. It checks the
// room's seq order itself (the SDK would repair gaps from history; a raw
// member shows what live delivery alone brought).
type member struct {
	conn   net.Conn
	wmu    sync.Mutex // guards writes to conn
	closed atomic.Bool

	mu   sync.Mutex // guards lats
	lats map[int][]int32
}

// dialMember connects, says Hello and resumes the session of token with
// the presence feed off.
func dialMember(ctx context.Context, addr, token string) (*member, *wire.Reader, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	m := &member{conn: nc, lats: map[int][]int32{}}
	r := wire.NewReader(bufio.NewReaderSize(nc, 32<<10), wire.DefaultMaxFrameSize)
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	fail := func(err error) (*member, *wire.Reader, error) { nc.Close(); return nil, nil, err }
	if err := m.send(&parleyv1.Frame{RequestId: 1, Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{
		Versions: []uint32{wire.Version}, Client: "msgbench"}}}); err != nil {
		return fail(err)
	}
	if f, err := r.ReadFrame(); err != nil || f.GetWelcome() == nil {
		return fail(fmt.Errorf("handshake: %v %v", f, err))
	}
	if err := m.send(&parleyv1.Frame{RequestId: 2, Body: &parleyv1.Frame_Resume{Resume: &parleyv1.ResumeRequest{
		Token: token, Options: &parleyv1.ClientOptions{Device: "msgbench", SkipPresenceFeed: true}}}}); err != nil {
		return fail(err)
	}
	for {
		f, err := r.ReadFrame()
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
	return wire.WriteFrame(m.conn, f)
}

// read is the member's reader: it answers pings and records room messages
// until the connection closes. last is the room's seq the member is known
// to have (the warm-up sets it).
func (m *member) read(r *wire.Reader, room string, ls *levels) {
	defer m.closed.Store(true)
	var last uint64
	missing := map[uint64]struct{}{} // seqs below last not received yet
	for {
		f, err := r.ReadFrame()
		if err != nil {
			return
		}
		switch b := f.Body.(type) {
		case *parleyv1.Frame_Ping:
			_ = m.send(&parleyv1.Frame{RequestId: f.GetRequestId(), Body: &parleyv1.Frame_Pong{Pong: &parleyv1.Pong{Nonce: b.Ping.GetNonce()}}})
		case *parleyv1.Frame_Message:
			msg := b.Message.GetMessage()
			if msg.GetConversation() != room {
				continue
			}
			t := now()
			lvl, id, ok := parseText(msg.GetText())
			l := ls.get(lvl)
			if !ok || l == nil || id >= len(l.recv) {
				continue
			}
			// Live events may arrive out of seq order (the messaging
			// service publishes after storing, and two sends of one
			// conversation can publish in either order): a seq below the
			// highest seen that was missing is late, not a duplicate.
			seq := msg.GetSeq()
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
