package e2e

// The findings of issue 9, replayed from outside against the real parleyd
// binary, the way the attacker's toolkit and the client written from
// docs/protocol.md met them: raw sockets, hand-built frames and HTTP bytes,
// nothing of the SDK where the SDK would hide what the server does.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// outsideParleyd runs parleyd on free ports with env and extra flags, and
// returns it with its TCP and HTTP addresses.
func outsideParleyd(t *testing.T, env []string, args ...string) (p *proc, tcp, httpAddr string) {
	t.Helper()
	tcp, httpAddr, admin := addr(testenv.FreePort(t)), addr(testenv.FreePort(t)), addr(testenv.FreePort(t))
	args = append([]string{"-data-dir", t.TempDir(), "-tcp-addr", tcp, "-http-addr", httpAddr, "-admin-addr", admin}, args...)
	p = start(t, "parleyd", env, args...)
	waitReady(t, p, admin)
	return p, tcp, httpAddr
}

// request sends f with request id rid and reads frames until the reply to
// rid arrives (events in between are skipped).
func (r *rawConn) request(rid uint32, f *parleyv1.Frame) *parleyv1.Frame {
	r.t.Helper()
	f.RequestId = rid
	r.send(f)
	for {
		got, err := r.rd.ReadFrame()
		if err != nil {
			r.t.Fatalf("waiting for the reply to %d: %v", rid, err)
		}
		if got.GetRequestId() == rid {
			return got
		}
	}
}

func (r *rawConn) login(rid uint32, user string) *parleyv1.Session {
	r.t.Helper()
	f := r.request(rid, &parleyv1.Frame{Body: &parleyv1.Frame_Login{Login: &parleyv1.LoginRequest{
		Username: user, Password: pw, Options: &parleyv1.ClientOptions{SkipPresenceFeed: true}}}})
	if f.GetSession() == nil {
		r.t.Fatalf("login %s: %v", user, f)
	}
	return f.GetSession()
}

func wantErrorFrame(t *testing.T, f *parleyv1.Frame, rid uint32, code parleyv1.ErrorCode) {
	t.Helper()
	if f.GetError().GetCode() != code || f.GetRequestId() != rid {
		t.Fatalf("got %v, want Error %v answering request %d", f, code, rid)
	}
}

// Issue 9, item 1: a file request answered early must not have the rest of
// its body parsed as further requests on the same connection.
func TestOutsideNoRequestSmuggling(t *testing.T) {
	_, _, httpAddr := outsideParleyd(t, nil)
	c, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	smuggled := strings.Repeat("OPTIONS /v1/files HTTP/1.1\r\nHost: x\r\n\r\n", 1000)
	req := fmt.Sprintf("PATCH /v1/files/nope HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"+
		"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: %d\r\n\r\n%s",
		len(smuggled), smuggled)
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	// Read what comes until the server closes or stays silent for 2 s.
	var got bytes.Buffer
	buf := make([]byte, 64<<10)
	for {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if n := strings.Count(got.String(), "HTTP/1.1 "); n != 1 || !strings.HasPrefix(got.String(), "HTTP/1.1 401") {
		t.Fatalf("%d responses to one unauthenticated PATCH, want one 401; first bytes:\n%.300s", n, got.String())
	}
}

// Issue 9, item 4: a length prefix announcing a large frame costs the
// gateway what actually arrived, not what was announced. 600 connections
// announcing 1 MiB each grew parleyd by ~600 MiB before the fix.
func TestOutsideAnnouncedFramesCostNothing(t *testing.T) {
	p, tcp, _ := outsideParleyd(t, nil)
	before := rssKiB(t, p)
	const conns = 600
	for i := range conns {
		c, err := net.Dial("tcp", tcp)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		r := &rawConn{t: t, c: c, rd: wire.NewReader(c, wire.DefaultMaxFrameSize)}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		r.hello()
		if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, 1<<20), 0x08)); err != nil {
			t.Fatal(err)
		}
	}
	// The gateway reads the prefixes as they come; take the largest size
	// over a few seconds.
	peak := 0
	for range 15 {
		time.Sleep(200 * time.Millisecond)
		peak = max(peak, rssKiB(t, p))
	}
	grown := peak - before
	if grown > 200<<10 {
		t.Fatalf("parleyd grew by %d MiB for %d stalled 1 MiB frames", grown>>10, conns)
	}
	t.Logf("parleyd grew by %d KiB for %d stalled 1 MiB frames", grown, conns)
}

// rssKiB is p's resident set size.
func rssKiB(t *testing.T, p *proc) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.Fields(v)[0])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// Issue 9, item 4: connections without a session are capped per address.
func TestOutsidePreLoginConnectionCap(t *testing.T) {
	_, tcp, _ := outsideParleyd(t, nil, "-conn-limit-exempt", "", "-max-unauth-conns-per-addr", "4")
	for range 4 {
		r := rawDial(t, tcp)
		r.hello()
	}
	r := rawDial(t, tcp)
	e := r.expectError(parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED)
	if !e.GetFatal() || e.GetRetryAfterMs() == 0 {
		t.Fatalf("over the cap: %v, want fatal RATE_LIMITED with retry_after_ms", e)
	}
	r.expectClosed()
}

// Issue 9, item 2: following §15.3 from acked_seq 0 reads every offline
// message, also when there are more than a page.
func TestOutsideCatchUpFromZero(t *testing.T) {
	_, tcp, _ := outsideParleyd(t, nil, "-msg-send-limit", "0") // 120 messages at once
	alice, _ := registered(t, "tcp://"+tcp, "alice")
	bobC, bob := registered(t, "tcp://"+tcp, "bob")
	if err := bobC.Logout(ctxS(t)); err != nil {
		t.Fatal(err)
	}
	const n = 120
	for i := 1; i <= n; i++ {
		if _, err := alice.SendTo(ctxS(t), bob.Username, fmt.Sprintf("while you were away %d", i)); err != nil {
			t.Fatal(err)
		}
	}

	r := rawDial(t, tcp)
	r.hello()
	r.login(2, bob.Username)
	var conv *parleyv1.Conversation
	f := r.request(3, &parleyv1.Frame{Body: &parleyv1.Frame_Conversations{Conversations: &parleyv1.ConversationsRequest{}}})
	for _, c := range f.GetConversationsReply().GetConversations() {
		if c.GetKind() == parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT {
			conv = c
		}
	}
	if conv == nil || conv.GetLastSeq() != n || conv.GetAckedSeq() != 0 {
		t.Fatalf("bob's private conversation: %v", conv)
	}
	var seqs []uint64
	after, rid := conv.GetAckedSeq(), uint32(4)
	for {
		f := r.request(rid, &parleyv1.Frame{Body: &parleyv1.Frame_History{History: &parleyv1.HistoryRequest{
			Conversation: conv.GetId(), AfterSeq: proto.Uint64(after)}}})
		rid++
		h := f.GetHistoryReply()
		if h == nil {
			t.Fatalf("history after %d: %v", after, f)
		}
		for _, m := range h.GetMessages() {
			seqs = append(seqs, m.GetSeq())
			after = m.GetSeq()
		}
		if !h.GetMore() {
			break
		}
		if rid > 20 {
			t.Fatal("catching up does not end")
		}
	}
	if len(seqs) != n || seqs[0] != 1 || seqs[n-1] != n {
		t.Fatalf("caught up %d messages (%v…), want seqs 1-%d", len(seqs), seqs[:min(5, len(seqs))], n)
	}
}

// Issue 9, item 3: a request whose strings are not valid UTF-8 gets
// INVALID_UTF8 answering its own request id, also when the bad string is
// nested, and after login.
func TestOutsideInvalidUTF8AnswersTheRequest(t *testing.T) {
	_, tcp, _ := outsideParleyd(t, nil)
	_, s := registered(t, "tcp://"+tcp, "carol")
	r := rawDial(t, tcp)
	r.hello()
	frame := func(rid uint64, field protowire.Number, body []byte) []byte {
		b := protowire.AppendTag(nil, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, rid)
		b = protowire.AppendTag(b, field, protowire.BytesType)
		b = protowire.AppendBytes(b, body)
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
	}
	str := func(field protowire.Number, s string) []byte {
		b := protowire.AppendTag(nil, field, protowire.BytesType)
		return protowire.AppendString(b, s)
	}
	next := func(rid uint32) {
		t.Helper()
		f, err := r.rd.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		wantErrorFrame(t, f, rid, parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8)
	}
	// login{username: "\xff", password}
	r.sendRaw(frame(7, 11, append(str(1, "\xffalice"), str(2, pw)...)))
	next(7)
	// login{username, password, options{device: "\xfe"}}: nested
	opts := protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), str(1, "\xfe"))
	r.sendRaw(frame(8, 11, append(append(str(1, s.Username), str(2, pw)...), opts...)))
	next(8)
	r.login(9, s.Username)
	// send{conversation: room.public, text: "hi \xc3"}
	r.sendRaw(frame(10, 15, append(str(1, parley.PublicRoom), str(3, "hi \xc3")...)))
	next(10)
}

// Issue 9, item 5: a 1 MiB text is MESSAGE_TOO_LARGE (not a retryable
// UNAVAILABLE).
func TestOutsideHugeTextIsTooLarge(t *testing.T) {
	_, tcp, _ := outsideParleyd(t, nil)
	_, s := registered(t, "tcp://"+tcp, "dave")
	r := rawDial(t, tcp)
	r.hello()
	r.login(2, s.Username)
	f := r.request(3, &parleyv1.Frame{Body: &parleyv1.Frame_Send{Send: &parleyv1.SendRequest{
		Conversation: parley.PublicRoom, Text: strings.Repeat("a", 1_040_000), ClientKey: "k1"}}})
	wantErrorFrame(t, f, 3, parleyv1.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE)
}

// Issue 9, item 5: logout ends the session on every connection that
// resumed it; the connection that logged out stays open without a session.
func TestOutsideLogoutEndsResumedConnections(t *testing.T) {
	_, tcp, _ := outsideParleyd(t, nil)
	_, s := registered(t, "tcp://"+tcp, "erin")
	a := rawDial(t, tcp)
	a.hello()
	sa := a.login(2, s.Username)
	b := rawDial(t, tcp)
	b.hello()
	if f := b.request(2, &parleyv1.Frame{Body: &parleyv1.Frame_Resume{Resume: &parleyv1.ResumeRequest{Token: sa.GetToken()}}}); f.GetSession().GetSessionId() != sa.GetSessionId() {
		t.Fatalf("resume on a second connection: %v", f)
	}
	if f := a.request(3, &parleyv1.Frame{Body: &parleyv1.Frame_Logout{Logout: &parleyv1.LogoutRequest{}}}); f.GetOk() == nil {
		t.Fatalf("logout: %v", f)
	}
	for {
		f, err := b.rd.ReadFrame()
		if err != nil {
			t.Fatalf("the resumed connection was not told its session ended: %v", err)
		}
		if se := f.GetSessionEnded(); se != nil {
			if se.GetReason() != parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED {
				t.Fatalf("SessionEnded reason %v, want SESSION_REVOKED", se.GetReason())
			}
			break
		}
	}
	b.expectClosed()
	f := a.request(4, &parleyv1.Frame{Body: &parleyv1.Frame_Who{Who: &parleyv1.WhoRequest{}}})
	wantErrorFrame(t, f, 4, parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED)
	// Neither token resumes any more.
	c := rawDial(t, tcp)
	c.hello()
	f = c.request(2, &parleyv1.Frame{Body: &parleyv1.Frame_Resume{Resume: &parleyv1.ResumeRequest{Token: sa.GetToken()}}})
	wantErrorFrame(t, f, 2, parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED)
}

// Issue 9, item 5: a resume that issues a new token retires the old one
// (here with no grace, -token-grace 0).
func TestOutsideResumeRetiresTheOldToken(t *testing.T) {
	_, tcp, _ := outsideParleyd(t, nil, "-token-grace", "0s")
	_, s := registered(t, "tcp://"+tcp, "frank")
	resume := func(tok string) *parleyv1.Frame {
		r := rawDial(t, tcp)
		r.hello()
		return r.request(2, &parleyv1.Frame{Body: &parleyv1.Frame_Resume{Resume: &parleyv1.ResumeRequest{Token: tok}}})
	}
	f := resume(s.Token)
	fresh := f.GetSession().GetToken()
	if fresh == "" || fresh == s.Token {
		t.Fatalf("resume: %v", f)
	}
	wantErrorFrame(t, resume(s.Token), 2, parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID)
	if f := resume(fresh); f.GetSession() == nil {
		t.Fatalf("the fresh token: %v", f)
	}
}

// Issue 9, item 7: wrong passwords from a stranger's address do not lock
// the owner out of an address the owner has logged in from.
func TestOutsideStrangerCannotLockTheOwnerOut(t *testing.T) {
	_, tcp, _ := outsideParleyd(t, nil) // the default login limits
	_, s := registered(t, "tcp://"+tcp, "grace")
	// 127.0.9.9 is another /24 than the owner's 127.0.0.1.
	stranger := func(rid uint32) *parleyv1.Frame {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 9, 9)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", tcp)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		r := &rawConn{t: t, c: c, rd: wire.NewReader(c, wire.DefaultMaxFrameSize)}
		r.hello()
		return r.request(rid, &parleyv1.Frame{Body: &parleyv1.Frame_Login{Login: &parleyv1.LoginRequest{Username: s.Username, Password: "not the password"}}})
	}
	limited := false
	for i := range 12 {
		f := stranger(uint32(i + 2))
		switch f.GetError().GetCode() {
		case parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS:
		case parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED:
			limited = true
		default:
			t.Fatalf("stranger's guess %d: %v", i, f)
		}
	}
	if !limited {
		t.Fatal("12 wrong passwords in a row were never slowed")
	}
	owner := rawDial(t, tcp)
	owner.hello()
	owner.login(2, s.Username)
}

// Issue 9, item 5: parleyd refuses to expose its NATS or admin port beyond
// loopback without credentials.
func TestOutsideParleydRefusesExposure(t *testing.T) {
	for _, args := range [][]string{
		{"-nats-listen", "0.0.0.0:" + strconv.Itoa(testenv.FreePort(t))},
		{"-admin-addr", "0.0.0.0:" + strconv.Itoa(testenv.FreePort(t))},
	} {
		p := start(t, "parleyd", nil, append([]string{"-data-dir", t.TempDir(), "-tcp-addr", addr(testenv.FreePort(t)),
			"-http-addr", addr(testenv.FreePort(t))}, args...)...)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("parleyd %v kept running", args)
		}
		if p.cmd.ProcessState.ExitCode() == 0 || !strings.Contains(p.out.String(), "token") {
			t.Fatalf("parleyd %v: exit %d, output:\n%s", args, p.cmd.ProcessState.ExitCode(), p.out.String())
		}
	}
}
