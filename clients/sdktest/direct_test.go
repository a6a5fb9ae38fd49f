package sdktest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
)

// Direct sessions (docs/protocol.md §20) through parleyd, on one machine:
// no NAT between the two clients, so the host candidates work and the
// session goes direct. The NAT lab (tests/natlab) covers real NATs.

// goDirect has alice offer bob a direct session and bob accept it; it
// returns both ends.
func goDirect(t *testing.T, alice, bob *parley.Client, bobName string) (*parley.DirectSession, *parley.DirectSession) {
	t.Helper()
	ctx := ctxT(t)
	type result struct {
		s   *parley.DirectSession
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := alice.GoDirect(ctx, bobName)
		done <- result{s, err}
	}()
	offer := next(t, bob, func(parley.DirectOfferEvent) bool { return true })
	if offer.From != "alice" {
		t.Fatalf("bob's offer is from %q", offer.From)
	}
	bs, err := bob.AcceptDirect(ctx, offer.SessionID)
	if err != nil {
		t.Fatalf("bob accepts: %v", err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("alice goes direct: %v", r.err)
	}
	if r.s.ID() != bs.ID() {
		t.Fatalf("two sessions: %s and %s", r.s.ID(), bs.ID())
	}
	return r.s, bs
}

func TestDirectSession(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	downloads := t.TempDir()
	alice := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false), parley.WithStateDir(t.TempDir()))
	bob := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false), parley.WithStateDir(t.TempDir()),
		parley.WithDirectDownloads(downloads))
	register(t, alice, "alice")
	register(t, bob, "bob")
	if alice.Welcome().STUNAddr == "" {
		t.Fatal("parleyd's Welcome names no rendezvous")
	}

	as, bs := goDirect(t, alice, bob, "bob")
	if !as.Controlling() || bs.Controlling() {
		t.Fatal("the opener must control the session")
	}
	for _, s := range []*parley.DirectSession{as, bs} {
		if err := s.WaitPath(ctx, parley.DirectDirect); err != nil {
			t.Fatalf("%s's end never went direct: %v (stats %+v)", s.PeerName(), err, s.Stats())
		}
	}
	if st := as.Stats(); st.Pair == "" || st.TimeToDirect <= 0 {
		t.Fatalf("direct without a pair: %+v", st)
	}
	// The keys: each side sees the other's device, and both compute the
	// same safety number.
	aID, _ := alice.DeviceID()
	bID, _ := bob.DeviceID()
	if as.PeerDevice().DeviceID != bID || bs.PeerDevice().DeviceID != aID {
		t.Fatalf("peer devices %s/%s, want %s/%s", as.PeerDevice().DeviceID, bs.PeerDevice().DeviceID, bID, aID)
	}
	if sn := as.SafetyNumber(); sn == "" || sn != bs.SafetyNumber() || len(strings.Fields(sn)) != 12 {
		t.Fatalf("safety numbers %q and %q", as.SafetyNumber(), bs.SafetyNumber())
	}

	// Chat both ways, kept in each side's own history.
	if _, err := as.Send(ctx, "hello over the direct path"); err != nil {
		t.Fatalf("alice sends: %v", err)
	}
	got := next(t, bob, func(ev parley.DirectMessageEvent) bool { return ev.Session.ID() == bs.ID() })
	if got.Message.Text != "hello over the direct path" || got.Message.PeerName != "alice" || got.Message.Outgoing {
		t.Fatalf("bob got %+v", got.Message)
	}
	if _, err := bs.Send(ctx, "hi alice"); err != nil {
		t.Fatalf("bob sends: %v", err)
	}
	next(t, alice, func(ev parley.DirectMessageEvent) bool { return ev.Message.Text == "hi alice" })
	ah, err := alice.DirectHistory(bob.Session().UserID)
	if err != nil || len(ah) != 2 || !ah[0].Outgoing || ah[1].Outgoing || ah[1].Text != "hi alice" {
		t.Fatalf("alice's direct history: %+v, %v", ah, err)
	}
	// The server stored none of it.
	conv, err := alice.OpenDirect(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if msgs, _, err := alice.History(ctx, conv.ID, 0, 50); err != nil || len(msgs) != 0 {
		t.Fatalf("the server's history of the private chat has %d messages (%v); direct messages must not be there", len(msgs), err)
	}

	// A file, checked by SHA-256 on arrival.
	data := make([]byte, 3<<20)
	rand.Read(data)
	src := filepath.Join(t.TempDir(), "photo.bin")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := as.SendFile(ctx, src, nil); err != nil {
		t.Fatalf("alice sends a file: %v", err)
	}
	fe := next(t, bob, func(ev parley.DirectFileEvent) bool { return true })
	if fe.Err != nil || fe.Name != "photo.bin" || fe.Size != int64(len(data)) {
		t.Fatalf("bob's file event: %+v", fe)
	}
	gotData, err := os.ReadFile(fe.Path)
	if err != nil || sha256.Sum256(gotData) != sha256.Sum256(data) || filepath.Dir(fe.Path) != downloads {
		t.Fatalf("the file bob got at %s differs (%v)", fe.Path, err)
	}

	// Closing ends it for both.
	if err := as.Close(); err != nil {
		t.Fatal(err)
	}
	next(t, bob, func(ev parley.DirectClosedEvent) bool { return ev.SessionID == bs.ID() })
	<-bs.Done()
	if _, err := bs.Send(ctx, "too late"); !errors.Is(err, parley.ErrDirectClosed) {
		t.Fatalf("sending on a closed session: %v", err)
	}
}

// TestDirectRelayOnly: a client that never reveals its addresses still
// gets an end-to-end encrypted session, through the relay, shown as such.
func TestDirectRelayOnly(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false), parley.WithDirectRelayOnly(true))
	bob := dial(t, p.WSAddr(), parley.WithPresenceFeed(false), parley.WithDirectRelayOnly(true))
	register(t, alice, "alice")
	register(t, bob, "bob")
	as, bs := goDirect(t, alice, bob, "bob")
	for _, s := range []*parley.DirectSession{as, bs} {
		if err := s.WaitPath(ctx, parley.DirectRelayed); err != nil {
			t.Fatalf("relay-only session: %v", err)
		}
	}
	for i := range 20 {
		text := strings.Repeat("x", 1+i*100)
		if _, err := bs.Send(ctx, text); err != nil {
			t.Fatalf("bob sends #%d: %v", i, err)
		}
		got := next(t, alice, func(parley.DirectMessageEvent) bool { return true })
		if got.Message.Text != text {
			t.Fatalf("message %d arrived as %d bytes", i, len(got.Message.Text))
		}
	}
	st := as.Stats()
	if st.Path != parley.DirectRelayed || st.DirectSent != 0 || st.RelaySent == 0 {
		t.Fatalf("relay-only stats: %+v", st)
	}
}

// TestDirectOneSideRelayOnly: when only the peer keeps to the relay, it
// never registers and neither side is introduced; both still show the
// session relayed 5 s after it was accepted (§20.4), not connecting.
func TestDirectOneSideRelayOnly(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false), parley.WithDirectRelayOnly(true))
	bob := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	register(t, alice, "alice")
	register(t, bob, "bob")
	as, bs := goDirect(t, alice, bob, "bob")
	for _, s := range []*parley.DirectSession{as, bs} {
		if err := s.WaitPath(ctx, parley.DirectRelayed); err != nil {
			t.Fatalf("%s's end: %v", s.PeerName(), err)
		}
	}
	if _, err := bs.Send(ctx, "relayed all the same"); err != nil {
		t.Fatal(err)
	}
	next(t, alice, func(ev parley.DirectMessageEvent) bool { return ev.Message.Text == "relayed all the same" })
}

// TestDirectRejected: a declined offer fails the opener with
// ErrDirectRejected; the other device of the user learns the offer went.
func TestDirectRejected(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	bob := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	register(t, alice, "alice")
	register(t, bob, "bob")
	done := make(chan error, 1)
	go func() {
		_, err := alice.GoDirect(ctx, "bob")
		done <- err
	}()
	offer := next(t, bob, func(parley.DirectOfferEvent) bool { return true })
	if err := bob.RejectDirect(ctx, offer.SessionID); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, parley.ErrDirectRejected) {
		t.Fatalf("alice after bob declined: %v", err)
	}
	if len(alice.DirectSessions()) != 0 {
		t.Fatal("a declined session is still listed")
	}
}

// TestDirectFriendsAutoAccept: with DirectFriends, a friend's offer is
// accepted without asking, a stranger's is not.
func TestDirectFriendsAutoAccept(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	bob := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false), parley.WithDirectPolicy(parley.DirectFriends))
	carol := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	register(t, alice, "alice")
	register(t, bob, "bob")
	register(t, carol, "carol")
	if err := alice.AddFriend(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	next(t, bob, func(parley.FriendEvent) bool { return true })
	if err := bob.AnswerFriend(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	s, err := alice.GoDirect(ctx, "bob")
	if err != nil {
		t.Fatalf("alice goes direct with her friend: %v", err)
	}
	opened := next(t, bob, func(parley.DirectOpenedEvent) bool { return true })
	if opened.Session.ID() != s.ID() {
		t.Fatal("bob opened another session")
	}
	// carol is no friend: bob is asked.
	go carol.GoDirect(ctx, "bob")
	offer := next(t, bob, func(parley.DirectOfferEvent) bool { return true })
	if offer.From != "carol" || offer.Friend {
		t.Fatalf("offer %+v", offer)
	}
}

// TestDirectPeerKeyChanged: bob comes back with a new device key; alice's
// client refuses to connect until she accepts it, showing the safety
// number; then it connects.
func TestDirectPeerKeyChanged(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false), parley.WithStateDir(t.TempDir()))
	bob := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false), parley.WithStateDir(t.TempDir()))
	register(t, alice, "alice")
	sess := register(t, bob, "bob")
	as, _ := goDirect(t, alice, bob, "bob")
	as.Close()

	// bob's new device: same account, a new key.
	bob2 := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false), parley.WithStateDir(t.TempDir()))
	login(t, bob2, "bob")
	bob.Close()
	done := make(chan error, 1)
	go func() {
		_, err := alice.GoDirect(ctx, "bob")
		done <- err
	}()
	offer := next(t, bob2, func(parley.DirectOfferEvent) bool { return true })
	go bob2.AcceptDirect(ctx, offer.SessionID)
	err := <-done
	var pk *parley.PeerKeyError
	if !errors.As(err, &pk) || !errors.Is(err, parley.ErrPeerKeyChanged) {
		t.Fatalf("alice connected to a key she never saw: %v", err)
	}
	if pk.PeerID != sess.UserID || len(strings.Fields(pk.SafetyNumber)) != 12 {
		t.Fatalf("key error %+v", pk)
	}
	if err := alice.TrustPeerKey(pk.PeerID, pk.Device.PublicKey); err != nil {
		t.Fatal(err)
	}
	as2, bs2 := goDirect(t, alice, bob2, "bob")
	if !bytes.Equal(as2.PeerDevice().PublicKey, pk.Device.PublicKey) || as2.SafetyNumber() != bs2.SafetyNumber() {
		t.Fatal("after trusting, the session is not with the new key")
	}
}
