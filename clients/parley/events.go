package parley

import (
	"context"
	"sync"
)

// Event is something that happened on the client's connection, received
// from Client.Events. The concrete types are listed below; switch on them:
//
//	for ev := range c.Events() {
//		switch ev := ev.(type) {
//		case parley.UserOnlineEvent:
//			fmt.Println(ev.User.Username, "came online")
//		case parley.SessionEndedEvent:
//			fmt.Println("session ended:", ev.Message)
//		}
//	}
type Event interface{ isEvent() }

// PresenceSnapshotEvent carries the whole online list, delivered once all
// frames of a server snapshot have arrived: after every Login, Register,
// Resume and reconnect (unless the presence feed is off). It replaces the
// list; Client.Online returns the same users.
type PresenceSnapshotEvent struct {
	Users []OnlineUser
}

// UserOnlineEvent: a user came online (opened their first connection).
type UserOnlineEvent struct {
	User OnlineUser
}

// UserOfflineEvent: a user went offline (closed their last connection).
type UserOfflineEvent struct {
	User OnlineUser
}

// SessionEndedEvent: the session is over and the client will not reconnect;
// it is the last event. Reason is LOGGED_IN_ELSEWHERE or SESSION_REVOKED when
// the server ended the session, or TOKEN_EXPIRED / TOKEN_INVALID /
// SESSION_REVOKED when resuming after a reconnect was refused.
type SessionEndedEvent struct {
	Reason  Code
	Message string
}

// Err returns the end of the session as an error matching the sentinel of
// its reason (errors.Is(ev.Err(), ErrLoggedInElsewhere)).
func (e SessionEndedEvent) Err() error { return &Error{Code: e.Reason, Message: e.Message} }

// DisconnectedEvent: the connection broke. If the client reconnects, a
// ReconnectedEvent follows; if it does not (reconnect off, after Logout, or
// Close), this is the last event.
type DisconnectedEvent struct {
	Err error
}

// ReconnectedEvent: a new connection is up and, if there was a session,
// resumed (same user, same session). Session is nil when the client was not
// logged in. A PresenceSnapshotEvent with the fresh online list follows.
type ReconnectedEvent struct {
	Session *Session
}

// MessageEvent: a new message in one of the user's conversations (the
// user's own included). For every conversation the client has listed or
// received a message in, MessageEvents come in seq order, each exactly
// once, with no gaps, across reconnects: the client reads what it missed
// from history before emitting later messages. After a login a fresh
// Client first emits the private messages the user has not acknowledged
// and the room's last 50 messages (older ones: History). Message events
// are never dropped.
type MessageEvent struct {
	Message Message
}

// SyncedEvent: after a login, resume or reconnect, the client has caught
// up: every message up to each conversation's LastSeq (as listed here) has
// been emitted before this event. Unread counts are as the server knew
// them when it listed the conversations.
type SyncedEvent struct {
	Conversations []Conversation
}

func (PresenceSnapshotEvent) isEvent() {}
func (MessageEvent) isEvent()          {}
func (SyncedEvent) isEvent()           {}
func (UserOnlineEvent) isEvent()       {}
func (UserOfflineEvent) isEvent()      {}
func (SessionEndedEvent) isEvent()     {}
func (DisconnectedEvent) isEvent()     {}
func (ReconnectedEvent) isEvent()      {}

// eventQueue decouples the connection's reader from the application: the
// reader never blocks on a slow consumer. Presence changes beyond limit
// are dropped (the online list itself stays accurate); lifecycle events and
// snapshots are always kept, and there are few of them.
//
// pump is the only goroutine sending on out. It ends, closing out, when the
// queue is finished and drained, or at once when abort is called.
type eventQueue struct {
	out   chan Event
	limit int

	// delivered, if set, is called by pump after the application has
	// received ev (auto-ack).
	delivered func(ev Event)

	mu        sync.Mutex // guards the fields below
	q         []Event
	nChanges  int // presence changes in q
	nMessages int // message events in q
	finished  bool
	dropped   uint64
	wake      chan struct{} // signalled (non-blocking) on push and finish
	room      chan struct{} // signalled (non-blocking) when pump takes a message event

	abort chan struct{} // closed by stop: discard the rest
	once  sync.Once
	done  chan struct{} // closed when pump has returned
}

func newEventQueue(limit int, delivered func(Event)) *eventQueue {
	q := &eventQueue{
		out:       make(chan Event),
		limit:     limit,
		delivered: delivered,
		wake:      make(chan struct{}, 1),
		room:      make(chan struct{}, 1),
		abort:     make(chan struct{}),
		done:      make(chan struct{}),
	}
	go q.pump()
	return q
}

func isChange(ev Event) bool {
	switch ev.(type) {
	case UserOnlineEvent, UserOfflineEvent, TypingEvent, ReceiptEvent:
		// Droppable: the online list, the next typing notice and
		// Conversation.PeerAckedSeq carry the same state.
		return true
	}
	return false
}

// push queues ev; it never blocks. It reports false if ev was dropped for
// lack of room.
func (q *eventQueue) push(ev Event) bool {
	q.mu.Lock()
	if q.finished {
		q.mu.Unlock()
		return true // the client has ended; nothing more is delivered
	}
	if isChange(ev) {
		if q.nChanges >= q.limit {
			q.dropped++
			q.mu.Unlock()
			return false
		}
		q.nChanges++
	}
	if _, ok := ev.(MessageEvent); ok {
		q.nMessages++
	}
	q.q = append(q.q, ev)
	q.mu.Unlock()
	q.signal()
	return true
}

// finish queues a last event (if non-nil); pump closes out once it is read.
func (q *eventQueue) finish(last Event) {
	q.mu.Lock()
	if !q.finished {
		if last != nil {
			q.q = append(q.q, last)
		}
		q.finished = true
	}
	q.mu.Unlock()
	q.signal()
}

// stop discards undelivered events and closes out.
func (q *eventQueue) stop() {
	q.once.Do(func() { close(q.abort) })
	<-q.done
}

// waitRoom blocks until fewer than n message events wait unread, so a
// long catch-up reads history no faster than the application takes it. It
// fails when the queue ends or ctx does.
func (q *eventQueue) waitRoom(ctx context.Context, n int) error {
	for {
		q.mu.Lock()
		queued, fin := q.nMessages, q.finished
		q.mu.Unlock()
		if fin {
			return ErrClosed
		}
		if queued < n {
			return nil
		}
		select {
		case <-q.room:
		case <-q.abort:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (q *eventQueue) droppedCount() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

func (q *eventQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *eventQueue) pump() {
	defer close(q.done)
	defer close(q.out)
	for {
		q.mu.Lock()
		if len(q.q) == 0 {
			fin := q.finished
			q.mu.Unlock()
			if fin {
				return
			}
			select {
			case <-q.wake:
				continue
			case <-q.abort:
				return
			}
		}
		ev := q.q[0]
		q.q[0] = nil
		q.q = q.q[1:]
		if isChange(ev) {
			q.nChanges--
		}
		_, isMsg := ev.(MessageEvent)
		if isMsg {
			q.nMessages--
		}
		q.mu.Unlock()
		if isMsg {
			select {
			case q.room <- struct{}{}:
			default:
			}
		}
		select {
		case q.out <- ev:
			if q.delivered != nil {
				q.delivered(ev)
			}
		case <-q.abort:
			return
		}
	}
}
