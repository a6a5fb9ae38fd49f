package convid_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/parleychat/parley/protocol/convid"
)

// TestParse is the grammar of docs/protocol.md: §15.1's table (room.public,
// dm.<user_id>.<user_id> "the two ids in ascending order", group.<group_id>)
// and §18.2's shape ("2-4 dot-separated tokens of letters, digits, -, _").
func TestParse(t *testing.T) {
	long := strings.Repeat("u", convid.MaxTokenLen)
	for _, tc := range []struct {
		id   string
		kind convid.Kind
		err  error
	}{
		// §15.1: the three kinds.
		{"room.public", convid.KindRoom, nil},
		{"dm.ua.ub", convid.KindDirect, nil},
		{"group.gabcdefghijklmnopqrst", convid.KindGroup, nil},
		// Ids as auth and messaging issue them, and as tests write them.
		{"dm.u-alice.u-bob", convid.KindDirect, nil},
		{"dm.U_1.u_1", convid.KindDirect, nil},                   // byte order: 'U' < 'u'
		{"dm." + long[1:] + "a." + long, convid.KindDirect, nil}, // the longest user ids
		// A room other than the public one is a room id; whether it
		// exists is messaging's answer.
		{"room.other", convid.KindRoom, nil},
		// §15.1: "the two ids in ascending order", two users.
		{"dm.ub.ua", convid.KindUnknown, convid.ErrUnordered},
		{"dm.ua.ua", convid.KindUnknown, convid.ErrSelf},
		// Shaped (§18.2) but not a kind of §15.1.
		{"dm.ua", convid.KindUnknown, convid.ErrUnknown},
		{"dm.ua.ub.uc", convid.KindUnknown, convid.ErrUnknown},
		{"room.public.x", convid.KindUnknown, convid.ErrUnknown},
		{"group.g1.g2", convid.KindUnknown, convid.ErrUnknown},
		{"grp.g1", convid.KindUnknown, convid.ErrUnknown},
		{"Room.public", convid.KindUnknown, convid.ErrUnknown},
		{"a.b.c.d", convid.KindUnknown, convid.ErrUnknown},
		// Not shaped like an id (§18.2).
		{"", convid.KindUnknown, convid.ErrMalformed},
		{"room", convid.KindUnknown, convid.ErrMalformed},
		{"dm.", convid.KindUnknown, convid.ErrMalformed},
		{"dm..ub", convid.KindUnknown, convid.ErrMalformed},
		{".dm.ua.ub", convid.KindUnknown, convid.ErrMalformed},
		{"dm.ua.ub.", convid.KindUnknown, convid.ErrMalformed},
		{"a.b.c.d.e", convid.KindUnknown, convid.ErrMalformed},
		{"dm.ua.>", convid.KindUnknown, convid.ErrMalformed},
		{"dm.ua.*", convid.KindUnknown, convid.ErrMalformed},
		{"dm.ua.ub ", convid.KindUnknown, convid.ErrMalformed},
		{"group.g\x00", convid.KindUnknown, convid.ErrMalformed},
		{"group.gé", convid.KindUnknown, convid.ErrMalformed},
		{"group.g/1", convid.KindUnknown, convid.ErrMalformed},
		{"group." + long + "g", convid.KindUnknown, convid.ErrMalformed},                       // a token over MaxTokenLen
		{long + "." + long + "." + long + "." + long, convid.KindUnknown, convid.ErrMalformed}, // over MaxLen
	} {
		id, err := convid.Parse(tc.id)
		if !errors.Is(err, tc.err) || id.Kind() != tc.kind {
			t.Errorf("Parse(%q) = %v, %v; want %v, %v", tc.id, id.Kind(), err, tc.kind, tc.err)
			continue
		}
		if err == nil && id.String() != tc.id {
			t.Errorf("Parse(%q).String() = %q", tc.id, id.String())
		}
	}
}

func TestParts(t *testing.T) {
	dm, err := convid.Parse("dm.ua.ub")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := dm.Users(); a != "ua" || b != "ub" {
		t.Errorf("Users = %q, %q", a, b)
	}
	if dm.Peer("ua") != "ub" || dm.Peer("ub") != "ua" || dm.Peer("uc") != "" || dm.Peer("") != "" {
		t.Errorf("Peer: %q %q %q", dm.Peer("ua"), dm.Peer("ub"), dm.Peer("uc"))
	}
	if !dm.Has("ua") || dm.Has("uc") || dm.RoomName() != "" || dm.GroupID() != "" {
		t.Errorf("direct id answers for other kinds: %+v", dm)
	}
	room, _ := convid.Parse(convid.PublicRoom)
	if room.RoomName() != "public" || room.Has("public") || room.Peer("public") != "" {
		t.Errorf("room: name %q", room.RoomName())
	}
	if a, b := room.Users(); a != "" || b != "" {
		t.Errorf("room users %q %q", a, b)
	}
	g, _ := convid.Parse("group.g1")
	if g.GroupID() != "g1" || g.RoomName() != "" {
		t.Errorf("group: id %q", g.GroupID())
	}
	var zero convid.ID
	if zero.Kind() != convid.KindUnknown || zero.String() != "" || zero.Kind().String() != "unknown" {
		t.Errorf("zero ID: %v %q", zero.Kind(), zero.String())
	}
	for k, want := range map[convid.Kind]string{convid.KindRoom: "room", convid.KindDirect: "dm", convid.KindGroup: "group"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q", k, k.String())
		}
	}
}

// TestParseFor: a private chat that does not name the asker is refused as
// not theirs however it is written (§15.1, PERMISSION_DENIED), so the
// answer about other users' chats does not depend on its spelling; one
// that names the asker gets Parse's answer.
func TestParseFor(t *testing.T) {
	for _, tc := range []struct {
		id, uid string
		err     error
	}{
		{"dm.ua.ub", "ua", nil},
		{"dm.ua.ub", "ub", nil},
		{"dm.ua.ub", "uc", convid.ErrNotMember},
		{"dm.ub.ua", "ua", convid.ErrUnordered},
		{"dm.ub.ua", "uc", convid.ErrNotMember},
		{"dm.ua.ua", "ua", convid.ErrSelf},
		{"dm.ua.ua", "ub", convid.ErrNotMember},
		{"dm.ua", "ua", convid.ErrUnknown},
		{"dm.ua.ub.uc", "ua", convid.ErrUnknown},
		{"dm.ub.uc.ud", "ua", convid.ErrNotMember},
		{"dm.>.ua", "ua", convid.ErrMalformed},
		{"dm.", "ua", convid.ErrNotMember},
		{"dm..", "", convid.ErrNotMember},
		{"room.public", "ua", nil},
		{"group.g1", "ua", nil},
		{"room.public.x", "ua", convid.ErrUnknown},
		{"", "ua", convid.ErrMalformed},
	} {
		if _, err := convid.ParseFor(tc.id, tc.uid); !errors.Is(err, tc.err) {
			t.Errorf("ParseFor(%q, %q) = %v, want %v", tc.id, tc.uid, err, tc.err)
		}
	}
}

func TestKindOf(t *testing.T) {
	for s, want := range map[string]convid.Kind{
		"room.public": convid.KindRoom, "room.x.y": convid.KindRoom,
		"dm.ua.ub": convid.KindDirect, "dm.": convid.KindDirect, "dm.>": convid.KindDirect,
		"group.g1": convid.KindGroup,
		"dm":       convid.KindUnknown, "": convid.KindUnknown, "grp.g1": convid.KindUnknown, "dmx.a.b": convid.KindUnknown,
	} {
		if got := convid.KindOf(s); got != want {
			t.Errorf("KindOf(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestConstructors(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want string
		err  error
	}{
		{"ua", "ub", "dm.ua.ub", nil},
		{"ub", "ua", "dm.ua.ub", nil},
		{"ua", "ua", "", convid.ErrSelf},
		{"ua", "", "", convid.ErrMalformed},
		{"u.a", "ub", "", convid.ErrMalformed},
	} {
		id, err := convid.DM(tc.a, tc.b)
		if !errors.Is(err, tc.err) || id.String() != tc.want {
			t.Errorf("DM(%q, %q) = %q, %v; want %q, %v", tc.a, tc.b, id, err, tc.want, tc.err)
		}
	}
	if g, err := convid.Group("gabc"); err != nil || g.String() != "group.gabc" {
		t.Errorf("Group = %q, %v", g, err)
	}
	if _, err := convid.Group("g>"); !errors.Is(err, convid.ErrMalformed) {
		t.Errorf("Group(g>) = %v", err)
	}
	if r, err := convid.Room("public"); err != nil || r.String() != convid.PublicRoom {
		t.Errorf("Room = %q, %v", r, err)
	}
	if _, err := convid.Room(""); !errors.Is(err, convid.ErrMalformed) {
		t.Errorf("Room(\"\") = %v", err)
	}
}

// FuzzParse: whatever Parse accepts prints back as the same string and
// parses to the same ID, and every id accepted names its kind by its first
// token; whatever it refuses, it refuses with one of its errors.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"room.public", "dm.ua.ub", "dm.ub.ua", "dm.ua.ua", "group.gabcdefghijklmnopqrst",
		"dm.u-alice.u-bob", "dm.", "a.b.c.d", "dm.ua.>", "group.gé", ""} {
		f.Add(s, "ua")
	}
	f.Fuzz(func(t *testing.T, s, uid string) {
		id, err := convid.Parse(s)
		if err != nil {
			if !errors.Is(err, convid.ErrMalformed) && !errors.Is(err, convid.ErrUnknown) &&
				!errors.Is(err, convid.ErrUnordered) && !errors.Is(err, convid.ErrSelf) {
				t.Fatalf("Parse(%q): unexpected error %v", s, err)
			}
			if id != (convid.ID{}) {
				t.Fatalf("Parse(%q) failed but returned %+v", s, id)
			}
		} else {
			if id.String() != s {
				t.Fatalf("Parse(%q).String() = %q", s, id.String())
			}
			again, err := convid.Parse(id.String())
			if err != nil || again != id {
				t.Fatalf("Parse(Parse(%q).String()) = %+v, %v", s, again, err)
			}
			if convid.KindOf(s) != id.Kind() || id.Kind() == convid.KindUnknown {
				t.Fatalf("Parse(%q) kind %v, KindOf %v", s, id.Kind(), convid.KindOf(s))
			}
		}
		forID, forErr := convid.ParseFor(s, uid)
		switch {
		case errors.Is(forErr, convid.ErrNotMember):
			if err == nil && id.Has(uid) {
				t.Fatalf("ParseFor(%q, %q): not a member of a chat naming them", s, uid)
			}
		case forErr != err || forID != id:
			t.Fatalf("ParseFor(%q, %q) = %+v, %v; Parse = %+v, %v", s, uid, forID, forErr, id, err)
		case err == nil && id.Kind() == convid.KindDirect && !id.Has(uid):
			t.Fatalf("ParseFor(%q, %q) accepted another users' chat", s, uid)
		}
	})
}
