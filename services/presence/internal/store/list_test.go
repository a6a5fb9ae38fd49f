package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// load puts n users online on gateway g in one resync: user i is
// "<prefix>i" and every tenth has two connections. It returns the expected
// list by user id.
func load(t *testing.T, s *Store, g, prefix string, n int) map[string]OnlineUser {
	t.Helper()
	want := make(map[string]OnlineUser, n)
	conns := make([]Conn, 0, n+n/10)
	for i := range n {
		c := Conn{ConnID: fmt.Sprint("c", i), UserID: fmt.Sprint(prefix, i), Username: fmt.Sprint("name-", prefix, i), SessionID: "s"}
		conns = append(conns, c)
		u := OnlineUser{UserID: c.UserID, Username: c.Username, Conns: 1}
		if i%10 == 0 {
			c.ConnID += "b"
			conns = append(conns, c)
			u.Conns = 2
		}
		want[u.UserID] = u
	}
	if _, _, err := s.Resync(context.Background(), Resync{GatewayID: g, ResyncID: "load", Conns: conns, Last: true}); err != nil {
		t.Fatal(err)
	}
	return want
}

// TestListPaging: walking the pages lists every online user (with the
// right name and connection count) and nobody else, each page within its
// limit. 100 users fit Redis's compact hash encoding, which HSCAN returns
// whole whatever COUNT says, and miniredis always returns the whole hash:
// both make the store cut one HSCAN batch across pages.
func TestListPaging(t *testing.T) {
	cases := []struct {
		users, limit int
	}{
		{2500, 500},
		{2500, 0}, // default: 500
		{100, 7},
		{3000, 5000}, // clamped to 1000
		{1, 1},
		{0, 500},
	}
	forEachBackend(t, func(t *testing.T, _ *Store, rdb redis.UniversalClient, clk *clock) {
		for i, tc := range cases {
			t.Run(fmt.Sprintf("%d users limit %d", tc.users, tc.limit), func(t *testing.T) {
				s := New(rdb, Options{Prefix: fmt.Sprintf("p%d:", i), Clock: clk.Now})
				want := load(t, s, "g1", "u", tc.users)
				got, _, pages := listAll(t, s, tc.limit)
				if len(got) != len(want) {
					t.Errorf("listed %d users, want %d", len(got), len(want))
				}
				for id, w := range want {
					if got[id] != w {
						t.Fatalf("user %s listed as %+v, want %+v", id, got[id], w)
					}
				}
				t.Logf("%d pages", pages)
			})
		}
	})
}

// TestListPagingDuringChanges: users who stay online during the whole walk
// are all listed even while others come and go between pages; nobody is
// listed who was never online; each page's seq covers the changes made
// before it. On real Redis the first case grows the hash past 2,048 entries
// (a table resize and rehash mid-walk) and the second grows a hash stored
// compactly (up to 128 entries by default, 512 in Debian's redis-server)
// into a hashtable mid-walk.
func TestListPagingDuringChanges(t *testing.T) {
	cases := []struct {
		name                              string
		stable, churn, limit, leave, join int // join and leave: per page
	}{
		{"large hash", 1500, 500, 100, 25, 40},
		{"small hash grows", 300, 100, 100, 10, 150},
	}
	forEachBackend(t, func(t *testing.T, _ *Store, rdb redis.UniversalClient, clk *clock) {
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ctx := context.Background()
				s := New(rdb, Options{Prefix: fmt.Sprintf("c%d:", i), Clock: clk.Now})
				stable := load(t, s, "stable", "s", tc.stable)
				churn := load(t, s, "churn", "c", tc.churn)
				everOnline := make(map[string]bool)
				for id := range stable {
					everOnline[id] = true
				}
				for id := range churn {
					everOnline[id] = true
				}
				listed := make(map[string]bool)
				cursor, pages, added, removed := "", 0, 0, 0
				var lastSeq uint64
				for {
					p, err := s.List(ctx, cursor, tc.limit)
					if err != nil {
						t.Fatal(err)
					}
					if p.Seq < lastSeq {
						t.Fatalf("page %d seq %d below the last change before it, %d", pages, p.Seq, lastSeq)
					}
					lastSeq = p.Seq
					pages++
					for _, u := range p.Users {
						if !everOnline[u.UserID] {
							t.Fatalf("listed %s, never online", u.UserID)
						}
						listed[u.UserID] = true
					}
					if p.Next == "" {
						break
					}
					cursor = p.Next
					// Between pages: churn users leave (some listed
					// already, some not) and new users arrive.
					for range tc.leave {
						if removed < len(churn) {
							chs, err := s.Disconnect(ctx, "churn", fmt.Sprint("c", removed))
							if err != nil {
								t.Fatal(err)
							}
							for _, c := range chs {
								lastSeq = max(lastSeq, c.Seq)
							}
							removed++
						}
					}
					for range tc.join {
						id := fmt.Sprint("n", added)
						everOnline[id] = true
						chs, err := s.Connect(ctx, Conn{GatewayID: "new", ConnID: id, UserID: id, Username: "name-" + id, SessionID: "s"})
						if err != nil {
							t.Fatal(err)
						}
						for _, c := range chs {
							lastSeq = max(lastSeq, c.Seq)
						}
						added++
					}
				}
				for id := range stable {
					if !listed[id] {
						t.Fatalf("stable user %s missing from the walk of %d pages", id, pages)
					}
				}
				t.Logf("%d pages, %d users listed, %d joined and %d left during the walk", pages, len(listed), added, removed)
			})
		}
	})
}

func TestListBadCursor(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, _ redis.UniversalClient, _ *clock) {
		for _, c := range []string{"x", "-1", "1x:u1", ":u1", " 1", "5:u1", strings.Repeat("1", maxCursorLen+1)} {
			if _, err := s.List(context.Background(), c, 10); !errors.Is(err, ErrBadCursor) {
				t.Errorf("cursor %q: %v, want ErrBadCursor", c, err)
			}
		}
		if _, err := s.List(context.Background(), "0:u1", 10); err != nil {
			t.Errorf("cursor resuming inside a batch: %v", err)
		}
	})
}
