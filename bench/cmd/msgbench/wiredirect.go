package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// wireClient is a msg-direct client that speaks the wire protocol directly
// (-direct-clients wire, the default), as the room's members do: a
// SendRequest frame per message, its SendReply matched by request id, the
// receiver's MessageEvents read from the encoded bytes (messageFields).
// The SDK (-direct-clients sdk) costs the load generator more CPU per
// message (its request machinery, every frame decoded in full: about 1.5x
// in the first runs, 117 against 75 µs per message at 3,000/s), and the
// load generator shares the two cores with the servers it measures;
// relayfloor's clients speak their protocol directly too.
type wireClient struct {
	m     *member
	r     rawReader
	nonce string // makes client keys unique across runs

	mu      sync.Mutex // guards next and waiting
	next    uint32
	waiting map[uint32]func(error)
}

// dialWire connects a wire client to g's TCP port with the session of token.
func dialWire(ctx context.Context, g *gateway, token string) (*wireClient, error) {
	m, r, err := dialMember(ctx, g, "tcp", token)
	if err != nil {
		return nil, err
	}
	return &wireClient{m: m, r: r, nonce: strconv.FormatUint(rand.Uint64(), 36), next: 1 << 20,
		waiting: map[uint32]func(error){}}, nil
}

// post sends text to conv and waits for the stored message's reply.
func (w *wireClient) post(ctx context.Context, conv, text string) error {
	ch := make(chan error, 1)
	rid, err := w.start(conv, text, func(err error) { ch <- err })
	if err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		w.mu.Lock()
		delete(w.waiting, rid)
		w.mu.Unlock()
		return ctx.Err()
	}
}

// start sends text to conv from the calling goroutine and returns; the
// reader calls done with the reply's outcome (or the connection's end),
// exactly once, unless start returns an error (then done is not called).
// The open loop sends this way, from its sender goroutine at the time the
// send is due, as relayfloor's clients do: a goroutine started per send
// would add its scheduling delay, on a busy machine, to every latency.
func (w *wireClient) start(conv, text string, done func(error)) (uint32, error) {
	w.mu.Lock()
	w.next++
	rid := w.next
	w.waiting[rid] = done
	w.mu.Unlock()
	err := w.m.send(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_Send{Send: &parleyv1.SendRequest{
		Conversation: conv, Text: text, ClientKey: w.nonce + "-" + strconv.FormatUint(uint64(rid), 36)}}})
	if err != nil {
		w.mu.Lock()
		_, mine := w.waiting[rid]
		delete(w.waiting, rid)
		w.mu.Unlock()
		if !mine {
			return rid, nil // the reader, ending, has called done already
		}
	}
	return rid, err
}

// errConnClosed fails the sends still waiting when the connection ends.
var errConnClosed = errors.New("connection closed")

// read is the client's reader until the connection ends: it answers
// pings, completes waiting sends, and, when conv is not "", records conv's
// messages as receiveDirect does for an SDK receiver.
func (w *wireClient) read(conv string, ls *levels, discons *atomic.Int64) {
	defer func() {
		if !w.m.closed.Swap(true) {
			discons.Add(1) // not closed by us
		}
		w.mu.Lock()
		waiting := w.waiting
		w.waiting = map[uint32]func(error){}
		w.mu.Unlock()
		for _, done := range waiting {
			done(errConnClosed)
		}
	}()
	var last uint64
	for {
		raw, err := w.r.ReadRaw()
		if err != nil {
			return
		}
		if c, seq, text, ok := messageFields(*raw); ok {
			if conv != "" && string(c) == conv {
				recordDirect(ls, &last, seq, string(text))
			}
			wire.PutRaw(raw)
			continue
		}
		rid, body := frameHead(*raw)
		if body == frameBodyPing {
			f, err := wire.Decode(*raw)
			wire.PutRaw(raw)
			if err != nil {
				return
			}
			_ = w.m.send(&parleyv1.Frame{RequestId: f.GetRequestId(), Body: &parleyv1.Frame_Pong{Pong: &parleyv1.Pong{Nonce: f.GetPing().GetNonce()}}})
			continue
		}
		var ferr error
		if body == frameBodyError {
			f, err := wire.Decode(*raw)
			if err != nil {
				wire.PutRaw(raw)
				return
			}
			ferr = fmt.Errorf("error %s: %s", f.GetError().GetCode(), f.GetError().GetMessage())
		}
		wire.PutRaw(raw)
		if rid == 0 {
			continue
		}
		w.mu.Lock()
		done := w.waiting[rid]
		delete(w.waiting, rid)
		w.mu.Unlock()
		if done != nil {
			done(ferr)
		}
	}
}

// close ends the connection (read then returns without counting a
// disconnect).
func (w *wireClient) close() {
	w.m.closed.Store(true)
	_ = w.m.conn.Close()
}

// recordDirect records a receiver's message seq with text: seqs must come
// 1, 2, 3… (as the SDK promises; a raw client sees what live delivery
// brings), and the first arrival of each benchmark message is timed.
func recordDirect(ls *levels, last *uint64, seq uint64, text string) {
	lvl, id, ok := parseText(text)
	l := ls.get(lvl)
	if !ok || l == nil || id >= len(l.recv) {
		return
	}
	switch {
	case seq <= *last:
		l.dups.Add(1)
		return
	case seq > *last+1:
		l.gaps.Add(int64(seq - *last - 1))
	}
	*last = seq
	t := now()
	if l.recv[id].Add(1) == 1 {
		l.first[id].Store(t - l.starts[id].Load())
	}
}

// Field numbers of Frame (protocol/proto/parley/v1/parley.proto).
const (
	frameRequestID = 1
	frameBodyError = 4
	frameBodyPing  = 5
)

// frameHead reads a frame's request_id and the field number of its body
// (0 if none or malformed) without decoding the body.
func frameHead(b []byte) (rid uint32, body protowire.Number) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return rid, 0
		}
		b = b[n:]
		if num == frameRequestID && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return rid, 0
			}
			rid, b = uint32(v), b[n:]
			continue
		}
		if typ == protowire.BytesType {
			body = num
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return rid, 0
		}
		b = b[n:]
	}
	return rid, body
}
