package parley

import (
	"slices"
	"strings"
	"time"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// OnlineUser is a user with at least one open connection.
type OnlineUser struct {
	UserID   string
	Username string
	// Sessions is how many connections the user has open, as of the
	// snapshot or change that reported the user.
	Sessions int
}

// Session is a logged-in session, returned by Register, Login and Resume.
type Session struct {
	UserID    string
	Username  string
	SessionID string
	// Token resumes the session on a new connection without the password.
	// Keep it secret; every Resume returns a refreshed one.
	Token     string
	ExpiresAt time.Time
	// Resumed is true when the session was continued with a token.
	Resumed bool
}

func sessionFromWire(s *parleyv1.Session) *Session {
	return &Session{
		UserID:    s.GetUserId(),
		Username:  s.GetUsername(),
		SessionID: s.GetSessionId(),
		Token:     s.GetToken(),
		ExpiresAt: unixMilli(s.GetExpiresAtUnixMs()),
		Resumed:   s.GetResumed(),
	}
}

func userFromWire(u *parleyv1.OnlineUser) OnlineUser {
	return OnlineUser{UserID: u.GetUserId(), Username: u.GetUsername(), Sessions: int(u.GetSessions())}
}

// maxPendingChanges bounds the changes kept while a snapshot is being
// assembled; the server sends the snapshot right after the session starts,
// so more than this means something is wrong and old ones are dropped.
const maxPendingChanges = 10000

// onlineView is the client's picture of who is online: the last complete
// snapshot plus the changes after it. It is not safe for concurrent use;
// the Client guards it.
//
// The server may relay a change before the snapshot that already contains
// it has been fully sent (they travel different roads). Every change and
// snapshot carries the presence sequence number: a change with
// seq <= the snapshot's seq is already reflected in it and is ignored.
// A zero seq means the server did not number it; such changes are applied.
type onlineView struct {
	users map[string]OnlineUser // by user id, the current view
	seq   uint64                // seq of the last complete snapshot
	ready bool                  // a complete snapshot arrived on this connection

	partial []OnlineUser               // snapshot frames received so far
	pending []*parleyv1.PresenceChange // changes seen before the snapshot completed
}

func newOnlineView() *onlineView {
	return &onlineView{users: make(map[string]OnlineUser)}
}

// reset starts a new connection: a fresh snapshot is expected. The current
// users stay visible until it completes.
func (v *onlineView) reset() {
	v.ready = false
	v.partial = nil
	v.pending = nil
}

// clear empties the view (after logout).
func (v *onlineView) clear() {
	v.reset()
	clear(v.users)
	v.seq = 0
}

// snapshot adds one snapshot frame. When it is the last one, the view is
// replaced and it returns the snapshot's users, then the events of the
// changes that were waiting and are newer than the snapshot (already
// applied to the view).
func (v *onlineView) snapshot(s *parleyv1.PresenceSnapshot) (users []OnlineUser, changes []Event, complete bool) {
	for _, u := range s.GetUsers() {
		v.partial = append(v.partial, userFromWire(u))
	}
	if !s.GetLast() {
		return nil, nil, false
	}
	clear(v.users)
	for _, u := range v.partial {
		v.users[u.UserID] = u
	}
	v.partial = nil
	v.seq = s.GetSeq()
	v.ready = true
	users = v.list()
	for _, c := range v.pending {
		if ev, ok := v.apply(c); ok {
			changes = append(changes, ev)
		}
	}
	v.pending = nil
	return users, changes, true
}

// abandonSnapshot handles a snapshot the server could not finish (it sent a
// non-fatal UNAVAILABLE or TIMEOUT instead of the remaining frames,
// docs/protocol.md §9): the partial list is dropped, the last complete view
// stays, and the changes that waited are applied to it. It returns those
// changes' events.
func (v *onlineView) abandonSnapshot() []Event {
	if v.ready {
		return nil
	}
	v.partial = nil
	v.ready = true
	var changes []Event
	for _, c := range v.pending {
		if ev, ok := v.apply(c); ok {
			changes = append(changes, ev)
		}
	}
	v.pending = nil
	return changes
}

// change applies one presence change and returns the event to report, or
// ok=false when it is stale or waits for the snapshot.
func (v *onlineView) change(c *parleyv1.PresenceChange) (Event, bool) {
	if !v.ready {
		if len(v.pending) >= maxPendingChanges {
			v.pending = v.pending[1:]
		}
		v.pending = append(v.pending, c)
		return nil, false
	}
	return v.apply(c)
}

func (v *onlineView) apply(c *parleyv1.PresenceChange) (Event, bool) {
	if c.GetSeq() != 0 && c.GetSeq() <= v.seq {
		return nil, false
	}
	u := userFromWire(c.GetUser())
	if c.GetOnline() {
		v.users[u.UserID] = u
		return UserOnlineEvent{User: u}, true
	}
	delete(v.users, u.UserID)
	return UserOfflineEvent{User: u}, true
}

// list returns the users sorted by username (then id), a fresh slice.
func (v *onlineView) list() []OnlineUser {
	out := make([]OnlineUser, 0, len(v.users))
	for _, u := range v.users {
		out = append(out, u)
	}
	sortUsers(out)
	return out
}

func sortUsers(us []OnlineUser) {
	slices.SortFunc(us, func(a, b OnlineUser) int {
		if c := strings.Compare(a.Username, b.Username); c != 0 {
			return c
		}
		return strings.Compare(a.UserID, b.UserID)
	})
}
