package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/clients/parley/natcheck"
)

// Direct sessions and NAT classification (docs/protocol.md §20):
//
//	parley nat [--json]
//	parley direct @bob [--json] [--trust NUMBER] [--relay-only] [--download-dir D] [--direct ask|friends|never]
//	parley direct --accept [--from bob] [--wait 60s] [...]
//
// `direct` connects, then sends each line of stdin as a message (a line
// "/file PATH" sends a file, "/stats" prints the path, "/quit" ends) and
// prints what arrives; stdin's end closes the session once everything sent
// was acknowledged.

func cmdNAT(ctx context.Context, a *app, args []string) error {
	fs := a.flags("nat", "")
	asJSON := fs.Bool("json", false, "print a JSON object")
	stunAddr := fs.String("stun", "", "the rendezvous's STUN address (default: the one the server announces)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	server := *stunAddr
	if server == "" {
		c, err := a.dial(ctx, parley.WithPresenceFeed(false))
		if err != nil {
			return err
		}
		server = c.Welcome().STUNAddr
		c.Close()
	}
	r, err := natcheck.Discover(ctx, server)
	if errors.Is(err, natcheck.ErrNoRendezvous) {
		return errors.New("the server runs no rendezvous (its Welcome names none); give --stun host:port")
	}
	if err != nil {
		return err
	}
	if *asJSON {
		out := map[string]any{"name": r.Name(), "mapping": r.Mapping.String(), "filtering": r.Filtering.String(),
			"no_nat": r.NoNAT, "udp_blocked": r.UDPBlocked, "rendezvous": server, "advice": r.Advice()}
		if r.Mapped.IsValid() {
			out["public_addr"] = r.Mapped.String()
		}
		return json.NewEncoder(a.stdout).Encode(out)
	}
	fmt.Fprintf(a.stdout, "NAT: %s\n", r.Name())
	if !r.UDPBlocked {
		fmt.Fprintf(a.stdout, "mapping: %s\nfiltering: %s\npublic address: %s\n", r.Mapping, r.Filtering, r.Mapped)
	}
	fmt.Fprintf(a.stdout, "direct sessions: %s\n", r.Advice())
	return nil
}

// directPolicyFlag adds --direct: what to do with offers to go direct
// (parley.WithDirectPolicy), the same for every command that takes them.
func directPolicyFlag(fs *flag.FlagSet, def string) *string {
	return fs.String("direct", def, "offers to go direct: ask (show them), friends (accept friends' at once, ask for others'), never (decline all)")
}

// parseDirectPolicy reads --direct.
func parseDirectPolicy(s string) (parley.DirectPolicy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "ask", "":
		return parley.DirectAsk, nil
	case "friends":
		return parley.DirectFriends, nil
	case "never":
		return parley.DirectNever, nil
	}
	return 0, usageError{fmt.Errorf("--direct must be ask, friends or never, not %q", s)}
}

func cmdDirect(ctx context.Context, a *app, args []string) error {
	fs := a.flags("direct", "[@user]")
	asJSON := fs.Bool("json", false, "print events as JSON lines")
	accept := fs.Bool("accept", false, "wait for an offer and accept it (instead of offering)")
	from := fs.String("from", "", "with --accept: only from this user")
	wait := fs.Duration("wait", 60*time.Second, "with --accept: how long to wait for an offer")
	trust := fs.String("trust", "", "accept the peer's new device key if its safety number is this one (compare it with them first)")
	relayOnly := fs.Bool("relay-only", false, "never go direct: do not reveal your addresses to the peer (the relay still cannot read anything)")
	dl := fs.String("download-dir", "", "where received files go (default "+downloadsDefault+")")
	policyFlag := directPolicyFlag(fs, "ask")
	pos, err := parseArgs(fs, args, 0, 1, "whom to go direct with (@user)")
	if err != nil {
		return err
	}
	policy, err := parseDirectPolicy(*policyFlag)
	if err != nil {
		return err
	}
	if *accept && policy == parley.DirectNever {
		return usageError{errors.New("--accept takes an offer: not with --direct never")}
	}
	var peer string
	switch {
	case *accept && len(pos) == 0:
	case !*accept && len(pos) == 1:
		tgt, err := parseTarget(pos[0])
		if err != nil {
			return err
		}
		if tgt.username == "" {
			return usageError{errors.New("direct sessions are with a user: @name")}
		}
		peer = tgt.username
	default:
		return usageError{errors.New("give @user to offer, or --accept to take an offer")}
	}
	key, err := a.serverKey()
	if err != nil {
		return err
	}
	saved, err := a.loadStored(key)
	if err != nil {
		return err
	}
	downloads := *dl
	if downloads == "" {
		downloads = a.downloadDir()
	}
	dctx, cancel := a.withTimeout(ctx)
	c, _, sess, err := a.openSession(dctx, parley.WithPresenceFeed(false),
		parley.WithStateDir(a.deviceDir(key, saved.Username)), parley.WithDirectDownloads(downloads),
		parley.WithDirectRelayOnly(*relayOnly), parley.WithDirectPolicy(policy))
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	out := &directOut{w: a.stdout, json: *asJSON}

	var s *parley.DirectSession
	for attempt := 0; ; attempt++ {
		if *accept {
			s, err = acceptOffer(ctx, c, *from, policy == parley.DirectFriends, *wait, out)
		} else {
			out.status("waiting for %s to accept…", peer)
			s, err = c.GoDirect(ctx, peer)
		}
		var pk *parley.PeerKeyError
		if attempt == 0 && errors.As(err, &pk) && *trust != "" {
			if digits(*trust) != digits(pk.SafetyNumber) {
				return fmt.Errorf("%s's new key has safety number %s, not the one given to --trust", pk.PeerName, pk.SafetyNumber)
			}
			if err := c.TrustPeerKey(pk.PeerID, pk.Device.PublicKey); err != nil {
				return err
			}
			out.status("trusting %s's new device key %s", pk.PeerName, pk.Device.DeviceID)
			continue
		}
		if errors.As(err, &pk) {
			return fmt.Errorf("%w\nif it matches what %s sees, run again with --trust '%s'", err, pk.PeerName, pk.SafetyNumber)
		}
		if err != nil {
			return err
		}
		break
	}
	defer s.Close()
	out.event(map[string]any{"event": "connected", "session": s.ID(), "peer": s.PeerName(), "self": sess.Username,
		"device": s.PeerDevice().DeviceID, "safety_number": s.SafetyNumber(), "path": s.Path().String()},
		"connected to %s (device %s), end-to-end encrypted; safety number %s", s.PeerName(), s.PeerDevice().DeviceID, s.SafetyNumber())
	out.path(s)
	return directLoop(ctx, a, c, s, out)
}

// acceptOffer waits for an offer (from, if set) and accepts it. With
// friends (--direct friends) the SDK accepts a friend's offer by itself
// and the others are left to expire.
func acceptOffer(ctx context.Context, c *parley.Client, from string, friends bool, wait time.Duration, out *directOut) (*parley.DirectSession, error) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if friends {
		out.status("waiting for a friend's offer to go direct…")
	} else {
		out.status("waiting for an offer to go direct…")
	}
	wanted := func(name string) bool { return from == "" || strings.EqualFold(name, from) }
	for {
		var offer *parley.DirectOfferEvent
		if !friends {
			for _, o := range c.DirectOffers() {
				if wanted(o.From) {
					offer = &o
					break
				}
			}
		}
		if offer == nil {
			select {
			case ev, ok := <-c.Events():
				if !ok {
					return nil, c.Err()
				}
				switch ev := ev.(type) {
				case parley.DirectOfferEvent:
					if !friends && wanted(ev.From) {
						offer = &ev
					}
				case parley.DirectOpenedEvent:
					if friends && wanted(ev.Session.PeerName()) {
						out.status("accepted %s's offer (a friend)", ev.Session.PeerName())
						return ev.Session, nil
					}
				}
			case <-wctx.Done():
				return nil, fmt.Errorf("no offer to go direct within %v", wait)
			}
		}
		if offer == nil {
			continue
		}
		out.status("accepting %s's offer", offer.From)
		return c.AcceptDirect(ctx, offer.SessionID)
	}
}

// directLoop sends stdin and prints events until stdin ends, /quit, or
// the session does.
func directLoop(ctx context.Context, a *app, c *parley.Client, s *parley.DirectSession, out *directOut) error {
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(a.stdin)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var (
		wg      sync.WaitGroup
		errMu   sync.Mutex
		sendErr error
	)
	setErr := func(err error) {
		errMu.Lock()
		if sendErr == nil {
			sendErr = err
		}
		errMu.Unlock()
	}
	// Messages go out one at a time, in order; files beside them.
	msgs := make(chan string, 64)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for text := range msgs {
			start := time.Now()
			m, err := s.Send(ctx, text)
			if err != nil {
				setErr(err)
				continue
			}
			out.event(map[string]any{"event": "sent", "id": m.ID, "ms": time.Since(start).Milliseconds(), "path": s.Path().String()},
				"")
		}
	}()
	defer func() {
		close(msgs)
		wg.Wait()
	}()
	for {
		select {
		case line, ok := <-lines:
			if !ok || line == "/quit" {
				close(msgs)
				wg.Wait()
				msgs = make(chan string) // for the deferred close
				errMu.Lock()
				defer errMu.Unlock()
				return sendErr
			}
			switch {
			case strings.HasPrefix(line, "/file "):
				path := strings.TrimSpace(strings.TrimPrefix(line, "/file "))
				wg.Add(1)
				go func() {
					defer wg.Done()
					start := time.Now()
					if err := s.SendFile(ctx, path, nil); err != nil {
						setErr(fmt.Errorf("sending %s: %w", path, err))
						out.event(map[string]any{"event": "file_failed", "name": filepath.Base(path), "error": err.Error()}, "sending %s failed: %v", path, err)
						return
					}
					out.event(map[string]any{"event": "file_sent", "name": filepath.Base(path), "ms": time.Since(start).Milliseconds()},
						"sent %s", filepath.Base(path))
				}()
			case line == "/stats":
				out.stats(s)
			case line == "":
			default:
				msgs <- line
			}
		case ev, ok := <-c.Events():
			if !ok {
				return c.Err()
			}
			switch ev := ev.(type) {
			case parley.DirectMessageEvent:
				if ev.Session.ID() != s.ID() {
					continue
				}
				out.event(map[string]any{"event": "message", "from": ev.Message.PeerName, "id": ev.Message.ID, "text": ev.Message.Text},
					"%s: %s", ev.Message.PeerName, ev.Message.Text)
			case parley.DirectPathEvent:
				if ev.Session.ID() == s.ID() {
					out.path(s)
				}
			case parley.DirectFileEvent:
				if ev.Session.ID() != s.ID() {
					continue
				}
				if ev.Err != nil {
					out.event(map[string]any{"event": "file_failed", "name": ev.Name, "error": ev.Err.Error()}, "receiving %s failed: %v", ev.Name, ev.Err)
					continue
				}
				out.event(map[string]any{"event": "file", "name": ev.Name, "size": ev.Size, "path": ev.Path, "sha256": fileSHA(ev.Path)},
					"received %s (%d bytes) into %s", ev.Name, ev.Size, ev.Path)
			case parley.DirectClosedEvent:
				if ev.SessionID == s.ID() {
					out.event(map[string]any{"event": "closed", "reason": ev.Reason}, "%s ended the session (%s)", s.PeerName(), ev.Reason)
					return nil
				}
			case parley.DisconnectedEvent:
				out.status("disconnected from the server (the direct session goes on; the relay waits for the reconnect)")
			}
		case <-s.Done():
			err := s.Err()
			if errors.Is(err, parley.ErrDirectClosed) {
				out.event(map[string]any{"event": "closed", "reason": "closed"}, "the session ended")
				return nil
			}
			return err
		case <-ctx.Done():
			return nil
		}
	}
}

// deviceDir is where this device's key, pins and direct history live for
// one account on one server: a key per account, so two accounts on one
// machine are not linked by their device key.
func (a *app) deviceDir(server, user string) string {
	h := sha256.Sum256([]byte(server))
	return filepath.Join(a.g.configDir, "devices", hex.EncodeToString(h[:6])+"-"+strings.ToLower(user))
}

func digits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// fileSHA is the hex SHA-256 of a received file ("" if unreadable).
func fileSHA(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// directOut prints for people or as JSON lines, one writer at a time.
type directOut struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
	last string // the last path printed
}

func (o *directOut) event(v map[string]any, format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.json {
		v["at"] = time.Now().UTC().Format(time.RFC3339Nano)
		b, _ := json.Marshal(v)
		fmt.Fprintf(o.w, "%s\n", b)
		return
	}
	if format != "" {
		fmt.Fprintf(o.w, format+"\n", args...)
	}
}

func (o *directOut) status(format string, args ...any) {
	o.event(map[string]any{"event": "status", "text": fmt.Sprintf(format, args...)}, format, args...)
}

func (o *directOut) path(s *parley.DirectSession) {
	st := s.Stats()
	o.mu.Lock()
	same := o.last == st.Path.String()+st.Pair
	o.last = st.Path.String() + st.Pair
	o.mu.Unlock()
	if same {
		return
	}
	v := map[string]any{"event": "path", "path": st.Path.String()}
	text := "path: " + st.Path.String()
	if st.Path == parley.DirectDirect {
		v["pair"], v["kind"], v["birthday"], v["time_to_direct_ms"] = st.Pair, st.PairKind, st.Birthday, st.TimeToDirect.Milliseconds()
		text += fmt.Sprintf(" (%s, %s, after %v)", st.Pair, st.PairKind, st.TimeToDirect.Round(time.Millisecond))
	}
	o.event(v, "%s", text)
}

func (o *directOut) stats(s *parley.DirectSession) {
	st := s.Stats()
	o.event(map[string]any{"event": "stats", "path": st.Path.String(), "pair": st.Pair, "kind": st.PairKind, "birthday": st.Birthday,
		"srflx": st.Srflx, "time_to_direct_ms": st.TimeToDirect.Milliseconds(), "direct_sent": st.DirectSent, "relay_sent": st.RelaySent,
		"direct_received": st.DirectReceived, "relay_received": st.RelayReceived, "checks_sent": st.ChecksSent},
		"path %s %s; public address %s; packets direct %d/%d, relayed %d/%d (sent/received)", st.Path, st.Pair, st.Srflx,
		st.DirectSent, st.DirectReceived, st.RelaySent, st.RelayReceived)
}
