package rpc

import (
	"context"
	"errors"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
)

// Requester sends a request and waits for its one reply: *nats.Conn, or
// *Replies for hot paths.
type Requester interface {
	RequestMsgWithContext(ctx context.Context, m *nats.Msg) (*nats.Msg, error)
}

// ErrRepliesClosed is a request made on, or waiting on, closed Replies.
var ErrRepliesClosed = errors.New("rpc: replies closed")

// Replies is a request/reply multiplexer like nats.go's own (one wildcard
// subscription under a fresh inbox, a token per request), except that a
// reply subject is used again once its reply has come, where nats.go mints
// a random one for every request.
//
// That matters to nats-server: every subject published to is looked up in
// the account's subscription list and cached (1,024 subjects per account,
// 8,192 per publishing connection); a fresh reply subject per request is a
// miss, a trie walk, an insertion and, every few hundred, a sweep that
// evicts the entries other traffic relied on. At a few thousand requests
// a second that was about a tenth of nats-server's CPU per message (the
// gateway's request to messaging and messaging's append to JetStream each
// had one). With Replies the reply subjects a process uses are as many as
// its requests in flight at once.
//
// A subject is reused only after its one reply was received, so a reply
// never reaches the wrong request as long as responders answer once (as
// libs/rpc's Server and JetStream do). A request that ends without its
// reply (deadline, cancellation) retires its subject: a late reply finds no
// one and is dropped.
type Replies struct {
	nc *nats.Conn

	mu      sync.Mutex
	prefix  string              // "<inbox>."; reply subjects are prefix + token
	sub     *nats.Subscription  // nil until the first request
	waiting map[string]*pending // by token
	free    []*pending          // answered: their subjects may be used again
	minted  uint64
	closed  bool
}

// pending is one reply subject and the channel its reply arrives on.
type pending struct {
	token, subject string
	ch             chan *nats.Msg // capacity 1: one reply per use
}

// NewReplies returns Replies on nc. Its inbox (under nc's inbox prefix)
// is subscribed at the first request; Close unsubscribes.
func NewReplies(nc *nats.Conn) *Replies {
	return &Replies{nc: nc, waiting: make(map[string]*pending)}
}

// deliver hands a reply to the request waiting on its subject.
func (r *Replies) deliver(m *nats.Msg) {
	r.mu.Lock()
	token := m.Subject[min(len(r.prefix), len(m.Subject)):]
	p := r.waiting[token]
	delete(r.waiting, token) // one reply only
	r.mu.Unlock()
	if p != nil {
		p.ch <- m // never blocks: the slot is empty while waiting
	}
}

// RequestMsgWithContext publishes m (its Reply replaced) and waits for the
// reply or ctx's end, as nats.Conn.RequestMsgWithContext does: a "503" status
// reply without data is nats.ErrNoResponders, ctx's end its error. m is
// not modified.
func (r *Replies) RequestMsgWithContext(ctx context.Context, m *nats.Msg) (*nats.Msg, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := r.take()
	if err != nil {
		return nil, err
	}
	out := nats.Msg{Subject: m.Subject, Reply: p.subject, Header: m.Header, Data: m.Data}
	if err := r.nc.PublishMsg(&out); err != nil {
		r.retire(p)
		return nil, err
	}
	select {
	case reply := <-p.ch:
		r.give(p)
		if reply == nil {
			return nil, ErrRepliesClosed
		}
		if len(reply.Data) == 0 && reply.Header.Get("Status") == "503" {
			return nil, nats.ErrNoResponders
		}
		return reply, nil
	case <-ctx.Done():
		r.retire(p)
		return nil, ctx.Err()
	}
}

// take returns a reply subject to wait on, registered as waiting.
func (r *Replies) take() (*pending, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrRepliesClosed
	}
	if r.sub == nil {
		if r.nc == nil {
			return nil, nats.ErrInvalidConnection
		}
		prefix := r.nc.NewInbox() + "."
		sub, err := r.nc.Subscribe(prefix+"*", r.deliver)
		if err != nil {
			return nil, err
		}
		r.prefix, r.sub = prefix, sub
	}
	var p *pending
	if n := len(r.free); n > 0 {
		p = r.free[n-1]
		r.free = r.free[:n-1]
	} else {
		r.minted++
		t := strconv.FormatUint(r.minted, 36)
		p = &pending{token: t, subject: r.prefix + t, ch: make(chan *nats.Msg, 1)}
	}
	r.waiting[p.token] = p
	return p, nil
}

// maxFree bounds the answered subjects kept for use again, so a burst of
// concurrent requests does not hold its subjects for good. More would not
// help nats-server either: its account cache holds 1,024 subjects.
const maxFree = 1024

// give returns an answered subject for use again.
func (r *Replies) give(p *pending) {
	r.mu.Lock()
	if !r.closed && len(r.free) < maxFree {
		r.free = append(r.free, p)
	}
	r.mu.Unlock()
}

// retire forgets a subject whose reply did not come in time; it is not
// used again.
func (r *Replies) retire(p *pending) {
	r.mu.Lock()
	if r.waiting[p.token] == p {
		delete(r.waiting, p.token)
	}
	r.mu.Unlock()
}

// Close unsubscribes; requests still waiting end with ErrRepliesClosed.
func (r *Replies) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	waiting := r.waiting
	r.waiting, r.free = map[string]*pending{}, nil
	sub := r.sub
	r.mu.Unlock()
	for _, p := range waiting {
		p.ch <- nil
	}
	if sub == nil {
		return nil
	}
	return sub.Unsubscribe()
}
