package e2e

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/libs/testenv"
)

// TestSecureTopology (issue 13 §6): the multi-process topology with NATS
// secured as the Kubernetes manifests secure it — TLS, a client
// certificate per deployable mapped to its user, the shipped permission
// file — two gateways and two replicas of every service, running the main
// paths: presence across gateways, room, private and group chat with
// history, a file transfer, a call, a direct-session offer. No process may
// have been refused anything by NATS: a permission the table lacks shows
// up as a "Permissions Violation" in a log even where the path recovers.
func TestSecureTopology(t *testing.T) {
	c := newCluster(t, 2, clusterOpts{secure: true, replicas: 2, messaging: 2, files: true, relays: 2, rendezvous: 2})
	gw1, gw2 := c.gateways[0], c.gateways[1]

	t.Run("presence across gateways", func(t *testing.T) {
		alice, as := registered(t, "tcp://"+gw1.tcp, "alice")
		bob, bs := registered(t, "ws://"+gw2.http+"/v1/ws", "bob")
		seesOnline(t, alice, bs.Username, true, 10*time.Second)
		seesOnline(t, bob, as.Username, true, 10*time.Second)
		if err := bob.Logout(ctxS(t)); err != nil {
			t.Fatalf("logout: %v", err)
		}
		seesOnline(t, alice, bs.Username, false, 10*time.Second)
	})
	t.Run("room and private chat", func(t *testing.T) { chatAcrossGateways(t, c) })
	t.Run("group chat", func(t *testing.T) { groupAcrossGateways(t, c) })
	t.Run("history", func(t *testing.T) {
		alice, _ := registered(t, "tcp://"+gw1.tcp, "alice")
		_, bs := registered(t, "tcp://"+gw2.tcp, "bob")
		dm, err := alice.SendTo(ctxS(t), bs.Username, "first")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Send(ctxS(t), dm.Conversation, "second"); err != nil {
			t.Fatal(err)
		}
		bob := dial(t, "tcp://"+gw2.tcp)
		if _, err := bob.Login(ctxS(t), bs.Username, pw); err != nil {
			t.Fatal(err)
		}
		page, _, err := bob.History(ctxS(t), dm.Conversation, 0, 50)
		if err != nil || len(page) != 2 || page[0].Text != "first" || page[1].Text != "second" {
			t.Fatalf("bob's history: %v, %+v", err, page)
		}
	})
	t.Run("file transfer", func(t *testing.T) {
		alice, _ := registered(t, "tcp://"+gw1.tcp, "alice")
		bob, bs := registered(t, "tcp://"+gw2.tcp, "bob")
		const size = 1<<20 + 17
		src, sum := writeRandomFile(t, t.TempDir(), "notes.bin", size, 7)
		offer, err := alice.OfferFile(ctxS(t), parley.OfferRequest{To: bs.Username, Name: "notes.bin", Size: size, SHA256: sum})
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := alice.Upload(ctxT(t, time.Minute), offer, f, parley.UploadOptions{}); err != nil {
			t.Fatalf("upload: %v", err)
		}
		pendingOffer(t, bob, "notes.bin")
		checkDownload(t, bob, offer.File.ID, size, sum)
	})
	t.Run("call", func(t *testing.T) {
		p := connectCall(t, gw1.tcp, gw2.tcp, testenv.StandardBursts(4), parley.TransportUDP)
		testenv.PlayAll(t, p.aMouth, p.bMouth)
		// Speech both ways. The bar is TestCallThroughLossAndJitter's
		// (0.4), not an idle call's (0.6): this test runs some twenty
		// processes, race-instrumented, on two cores, and audio is the
		// one path here that is sensitive to scheduling delay.
		testenv.RequireHeard(t, "alice -> bob", testenv.Listen(p.aMouth, p.bEar, time.Second), 0.4)
		testenv.RequireHeard(t, "bob -> alice", testenv.Listen(p.bMouth, p.aEar, time.Second), 0.4)
		if err := p.aSess.Hangup(ctxS(t)); err != nil {
			t.Fatalf("hang up: %v", err)
		}
		callEnded(t, p.bob, p.callID, 10*time.Second)
	})
	t.Run("direct session offer", func(t *testing.T) {
		alice, _ := registered(t, "tcp://"+gw1.tcp, "alice")
		bob, bs := registered(t, "tcp://"+gw2.tcp, "bob")
		done := make(chan error, 1)
		go func() {
			_, err := alice.GoDirect(ctxT(t, 30*time.Second), bs.Username)
			done <- err
		}()
		ev := waitEvent(t, bob, 20*time.Second, "alice's direct-session offer", func(ev parley.Event) bool {
			_, ok := ev.(parley.DirectOfferEvent)
			return ok
		})
		if err := bob.RejectDirect(ctxS(t), ev.(parley.DirectOfferEvent).SessionID); err != nil {
			t.Fatalf("reject: %v", err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, parley.ErrDirectRejected) {
				t.Fatalf("alice's offer ended with %v, want ErrDirectRejected", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("alice's offer still waits after bob rejected it")
		}
	})

	// Every process, every replica.
	procs := append([]*proc{c.auth, c.presence, c.file}, c.msgs...)
	procs = append(procs, c.extra...)
	for _, g := range c.gateways {
		procs = append(procs, g.proc)
	}
	for _, r := range c.relays {
		procs = append(procs, r.proc)
	}
	for _, p := range procs {
		if out := p.out.String(); strings.Contains(out, "Permissions Violation") {
			t.Errorf("NATS refused %s something:\n%s", p.name, grepLines(out, "Permissions Violation"))
		}
	}
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
