package parley

import (
	"reflect"
	"testing"

	"github.com/parleychat/parley/protocol/parleyv1"
)

func wu(id, name string) *parleyv1.OnlineUser {
	return &parleyv1.OnlineUser{UserId: id, Username: name, Sessions: 1}
}

func snap(last bool, seq uint64, users ...*parleyv1.OnlineUser) *parleyv1.Frame {
	return &parleyv1.Frame{Body: &parleyv1.Frame_PresenceSnapshot{PresenceSnapshot: &parleyv1.PresenceSnapshot{Users: users, Last: last, Seq: seq}}}
}

func chg(online bool, seq uint64, u *parleyv1.OnlineUser) *parleyv1.Frame {
	return &parleyv1.Frame{Body: &parleyv1.Frame_PresenceChange{PresenceChange: &parleyv1.PresenceChange{User: u, Online: online, Seq: seq}}}
}

// feed drives a view the way the Client does and returns what the
// application would see: events and the final online list, as usernames.
func feed(v *onlineView, frames ...*parleyv1.Frame) (events []string, online []string) {
	for _, f := range frames {
		switch b := f.Body.(type) {
		case *parleyv1.Frame_PresenceSnapshot:
			users, changes, complete := v.snapshot(b.PresenceSnapshot)
			if complete {
				s := "snapshot:"
				for _, u := range users {
					s += " " + u.Username
				}
				events = append(events, s)
				for _, ev := range changes {
					events = append(events, describe(ev))
				}
			}
		case *parleyv1.Frame_PresenceChange:
			if ev, ok := v.change(b.PresenceChange); ok {
				events = append(events, describe(ev))
			}
		case *parleyv1.Frame_Error:
			for _, ev := range v.abandonSnapshot() {
				events = append(events, describe(ev))
			}
		}
	}
	for _, u := range v.list() {
		online = append(online, u.Username)
	}
	return events, online
}

func describe(ev Event) string {
	switch ev := ev.(type) {
	case UserOnlineEvent:
		return "online " + ev.User.Username
	case UserOfflineEvent:
		return "offline " + ev.User.Username
	}
	return "?"
}

func TestOnlineView(t *testing.T) {
	alice, bob, carol, dave := wu("u1", "alice"), wu("u2", "bob"), wu("u3", "carol"), wu("u4", "dave")
	tests := []struct {
		name       string
		frames     []*parleyv1.Frame
		wantEvents []string
		wantOnline []string
	}{
		{
			name:       "snapshot split across frames is delivered once, sorted",
			frames:     []*parleyv1.Frame{snap(false, 0, carol, alice), snap(false, 0), snap(true, 7, bob)},
			wantEvents: []string{"snapshot: alice bob carol"},
			wantOnline: []string{"alice", "bob", "carol"},
		},
		{
			name:       "changes after the snapshot apply",
			frames:     []*parleyv1.Frame{snap(true, 5, alice), chg(true, 6, bob), chg(false, 7, alice)},
			wantEvents: []string{"snapshot: alice", "online bob", "offline alice"},
			wantOnline: []string{"bob"},
		},
		{
			name:       "changes at or below the snapshot seq are ignored",
			frames:     []*parleyv1.Frame{snap(true, 10, alice, bob), chg(false, 9, alice), chg(true, 10, carol), chg(true, 11, dave)},
			wantEvents: []string{"snapshot: alice bob", "online dave"},
			wantOnline: []string{"alice", "bob", "dave"},
		},
		{
			name: "changes racing the snapshot wait for it and are filtered by seq",
			frames: []*parleyv1.Frame{
				chg(true, 3, bob), // already in the snapshot (seq 4)
				snap(false, 0, alice),
				chg(false, 5, alice), // newer than the snapshot
				snap(true, 4, bob),
			},
			wantEvents: []string{"snapshot: alice bob", "offline alice"},
			wantOnline: []string{"bob"},
		},
		{
			name:       "unnumbered changes are applied",
			frames:     []*parleyv1.Frame{snap(true, 0, alice), chg(true, 0, bob)},
			wantEvents: []string{"snapshot: alice", "online bob"},
			wantOnline: []string{"alice", "bob"},
		},
		{
			name:       "a new snapshot replaces the list",
			frames:     []*parleyv1.Frame{snap(true, 1, alice, bob), snap(true, 9, carol)},
			wantEvents: []string{"snapshot: alice bob", "snapshot: carol"},
			wantOnline: []string{"carol"},
		},
		{
			name:       "no snapshot yet: nothing is online",
			frames:     []*parleyv1.Frame{chg(true, 1, alice)},
			wantEvents: nil,
			wantOnline: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, online := feed(newOnlineView(), tt.frames...)
			if !reflect.DeepEqual(events, tt.wantEvents) {
				t.Errorf("events = %q, want %q", events, tt.wantEvents)
			}
			if !reflect.DeepEqual(online, tt.wantOnline) {
				t.Errorf("online = %q, want %q", online, tt.wantOnline)
			}
		})
	}
}

func TestOnlineViewReconnect(t *testing.T) {
	alice, bob := wu("u1", "alice"), wu("u2", "bob")
	v := newOnlineView()
	feed(v, snap(true, 50, alice, bob), snap(false, 0, alice)) // a partial snapshot dies with the connection

	// After a reconnect the old list stays visible until the new snapshot
	// (whose seq may be lower: presence restarted), and the half-received
	// old snapshot is forgotten.
	v.reset()
	if _, online := feed(v); !reflect.DeepEqual(online, []string{"alice", "bob"}) {
		t.Fatalf("during reconnect online = %q, want the old list", online)
	}
	events, online := feed(v, chg(true, 2, wu("u3", "carol")), snap(true, 1, bob))
	if want := []string{"snapshot: bob", "online carol"}; !reflect.DeepEqual(events, want) {
		t.Errorf("events = %q, want %q", events, want)
	}
	if want := []string{"bob", "carol"}; !reflect.DeepEqual(online, want) {
		t.Errorf("online = %q, want %q", online, want)
	}

	v.clear()
	if _, online := feed(v); online != nil {
		t.Errorf("after clear online = %q, want empty", online)
	}
}

func TestEventQueue(t *testing.T) {
	q := newEventQueue(2, nil)
	q.push(PresenceSnapshotEvent{})
	for _, n := range []string{"a", "b", "c"} {
		q.push(UserOnlineEvent{User: OnlineUser{Username: n}})
	}
	q.push(ReconnectedEvent{}) // lifecycle events are never dropped
	q.finish(SessionEndedEvent{Reason: CodeLoggedInElsewhere})
	q.push(UserOnlineEvent{}) // after the end: ignored

	var got []string
	for ev := range q.out {
		switch ev := ev.(type) {
		case UserOnlineEvent:
			got = append(got, "online "+ev.User.Username)
		default:
			got = append(got, reflect.TypeOf(ev).Name())
		}
	}
	// The pump may take the first change before the third arrives, so
	// either "c" or nothing was dropped; the order is kept and the final
	// event is last.
	if got[0] != "PresenceSnapshotEvent" || got[len(got)-1] != "SessionEndedEvent" || got[len(got)-2] != "ReconnectedEvent" {
		t.Errorf("events = %q", got)
	}
	if n := len(got) - 3; n < 2 || uint64(3-n) != q.droppedCount() {
		t.Errorf("events = %q, dropped %d", got, q.droppedCount())
	}
}

func TestEventQueueStopDiscards(t *testing.T) {
	q := newEventQueue(10, nil)
	q.push(UserOnlineEvent{})
	q.stop()
	for range q.out { // closed, possibly after the one event
	}
	q.stop() // idempotent
}

// TestOnlineViewAbandonedSnapshot: the server could not finish a snapshot
// after a reconnect (a non-fatal UNAVAILABLE instead of the last frames):
// the half-received list is dropped, the previous list stays, and the
// changes that waited are applied.
func TestOnlineViewAbandonedSnapshot(t *testing.T) {
	v := newOnlineView()
	a, b, c := wu("u1", "alice"), wu("u2", "bob"), wu("u3", "carol")
	feed(v, snap(true, 10, a, b))
	v.reset() // a reconnect: a fresh snapshot is expected
	unavailable := &parleyv1.Frame{Body: &parleyv1.Frame_Error{Error: &parleyv1.Error{Code: parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE}}}
	events, online := feed(v, snap(false, 20, c), chg(false, 21, b), unavailable, chg(true, 22, c))
	if want := []string{"offline bob", "online carol"}; !reflect.DeepEqual(events, want) {
		t.Fatalf("events %v, want %v", events, want)
	}
	if want := []string{"alice", "carol"}; !reflect.DeepEqual(online, want) {
		t.Fatalf("online %v, want %v", online, want)
	}
}
