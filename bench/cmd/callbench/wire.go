package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// wireClient is one user's connection to a gateway speaking the wire
// protocol directly (protocol/wire): the SDK keeps a call's stream id and
// key to itself, and the load generator needs them (CallJoined) to seal
// its own packets. Requests are matched to replies by request id; pushed
// frames (call events, pings) are read and dropped, pings answered.
type wireClient struct {
	conn net.Conn
	wmu  sync.Mutex // guards writes to conn
	next atomic.Uint32

	mu      sync.Mutex // guards pending
	pending map[uint32]chan *parleyv1.Frame
	done    chan struct{} // closed when the read loop ends
}

// dialWire connects to a gateway and says Hello.
func dialWire(ctx context.Context, addr string) (*wireClient, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &wireClient{conn: nc, pending: map[uint32]chan *parleyv1.Frame{}, done: make(chan struct{})}
	go c.read()
	go c.keepAlive()
	reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{
		Versions: []uint32{wire.Version}, Client: "callbench"}}})
	if err != nil {
		nc.Close()
		return nil, err
	}
	if reply.GetWelcome() == nil {
		nc.Close()
		return nil, fmt.Errorf("hello: got %T", reply.GetBody())
	}
	return c, nil
}

func (c *wireClient) close() { c.conn.Close() }

// keepAlive pings every 20 s (the gateway closes a connection that says
// nothing for its idle timeout) until the connection ends; the Pong is
// read and dropped.
func (c *wireClient) keepAlive() {
	t := time.NewTicker(20 * time.Second)
	defer t.Stop()
	var nonce uint64
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			nonce++
			if c.send(&parleyv1.Frame{RequestId: c.next.Add(1), Body: &parleyv1.Frame_Ping{Ping: &parleyv1.Ping{Nonce: nonce}}}) != nil {
				return
			}
		}
	}
}

func (c *wireClient) send(f *parleyv1.Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return wire.WriteFrame(c.conn, f)
}

// do sends a request and waits for its reply; an error frame is an error.
func (c *wireClient) do(ctx context.Context, f *parleyv1.Frame) (*parleyv1.Frame, error) {
	id := c.next.Add(1)
	f.RequestId = id
	ch := make(chan *parleyv1.Frame, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	if err := c.send(f); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		if e := r.GetError(); e != nil {
			return nil, fmt.Errorf("%s: %s", e.GetCode(), e.GetMessage())
		}
		return r, nil
	case <-c.done:
		return nil, fmt.Errorf("connection closed")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *wireClient) read() {
	defer close(c.done)
	r := wire.NewReader(c.conn, wire.DefaultMaxFrameSize)
	for {
		f, err := r.ReadFrame()
		if err != nil {
			return
		}
		if p := f.GetPing(); p != nil {
			_ = c.send(&parleyv1.Frame{RequestId: f.GetRequestId(), Body: &parleyv1.Frame_Pong{Pong: &parleyv1.Pong{Nonce: p.GetNonce()}}})
			continue
		}
		if f.GetRequestId() == 0 {
			continue // a pushed event
		}
		c.mu.Lock()
		ch := c.pending[f.GetRequestId()]
		c.mu.Unlock()
		if ch != nil {
			select {
			case ch <- f:
			default:
			}
		}
	}
}

var clientOptions = &parleyv1.ClientOptions{Device: "callbench", SkipPresenceFeed: true}

// register registers a new user on this connection.
func (c *wireClient) register(ctx context.Context, name, password string) (*parleyv1.Session, error) {
	r, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Register{Register: &parleyv1.RegisterRequest{
		Username: name, Password: password, Options: clientOptions}}})
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", name, err)
	}
	return r.GetSession(), nil
}

// resume continues a session (a token from the SDK) on this connection.
func (c *wireClient) resume(ctx context.Context, token string) error {
	_, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Resume{Resume: &parleyv1.ResumeRequest{
		Token: token, Options: clientOptions}}})
	return err
}

func (c *wireClient) placeTo(ctx context.Context, username string) (*parleyv1.CallJoined, error) {
	return c.callJoined(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_PlaceCall{PlaceCall: &parleyv1.PlaceCallRequest{ToUsername: username}}})
}

func (c *wireClient) placeIn(ctx context.Context, conversation string) (*parleyv1.CallJoined, error) {
	return c.callJoined(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_PlaceCall{PlaceCall: &parleyv1.PlaceCallRequest{Conversation: conversation}}})
}

func (c *wireClient) join(ctx context.Context, callID string) (*parleyv1.CallJoined, error) {
	return c.callJoined(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_JoinCall{JoinCall: &parleyv1.JoinCallRequest{CallId: callID}}})
}

func (c *wireClient) leave(ctx context.Context, callID string) error {
	_, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_LeaveCall{LeaveCall: &parleyv1.LeaveCallRequest{CallId: callID}}})
	return err
}

func (c *wireClient) callJoined(ctx context.Context, f *parleyv1.Frame) (*parleyv1.CallJoined, error) {
	r, err := c.do(ctx, f)
	if err != nil {
		return nil, err
	}
	j := r.GetCallJoined()
	if j == nil {
		return nil, fmt.Errorf("expected call_joined, got %T", r.GetBody())
	}
	return j, nil
}
