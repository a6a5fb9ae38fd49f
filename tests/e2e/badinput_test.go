package e2e

import (
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// rawConn is a hand-driven protocol connection for sending bad input.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	rd *wire.Reader
}

func rawDial(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: t, c: c, rd: wire.NewReader(c, wire.DefaultMaxFrameSize)}
}

func (r *rawConn) send(f *parleyv1.Frame) {
	r.t.Helper()
	if err := wire.WriteFrame(r.c, f); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) sendRaw(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// expectError reads frames until an Error arrives and checks its code.
func (r *rawConn) expectError(code parleyv1.ErrorCode) *parleyv1.Error {
	r.t.Helper()
	for {
		f, err := r.rd.ReadFrame()
		if err != nil {
			r.t.Fatalf("waiting for %v: %v", code, err)
		}
		if e := f.GetError(); e != nil {
			if e.GetCode() != code {
				r.t.Fatalf("error %v (%s), want %v", e.GetCode(), e.GetMessage(), code)
			}
			if strings.TrimSpace(e.GetMessage()) == "" {
				r.t.Fatalf("error %v without a message", code)
			}
			return e
		}
	}
}

// expectClosed checks the server closed the connection.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	for {
		_, err := r.rd.ReadFrame()
		if err == io.EOF || err == io.ErrUnexpectedEOF || isReset(err) {
			return
		}
		if err != nil {
			r.t.Fatalf("want close, got %v", err)
		}
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "closed"))
}

func (r *rawConn) hello() {
	r.t.Helper()
	r.send(&parleyv1.Frame{RequestId: 1, Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{Versions: []uint32{1}}}})
	f, err := r.rd.ReadFrame()
	if err != nil || f.GetWelcome() == nil {
		r.t.Fatalf("welcome: %v %v", f, err)
	}
}

// TestBadInputIsolated sends every kind of bad input to a real gateway
// while a second, logged-in client keeps working and keeps receiving
// presence events.
func TestBadInputIsolated(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{})
	gw := c.gateways[0]
	bystander, _ := registered(t, "tcp://"+gw.tcp, "bystander")
	_, victim := registered(t, "tcp://"+gw.tcp, "victim")
	stillWorks := func(step string) {
		t.Helper()
		if _, err := bystander.Ping(ctxS(t)); err != nil {
			t.Fatalf("after %s the bystander's ping failed: %v", step, err)
		}
		// It still receives presence events: a new user comes online.
		_, s := registered(t, "tcp://"+gw.tcp, "newcomer")
		seesOnline(t, bystander, s.Username, true, 10*time.Second)
	}

	t.Run("random bytes", func(t *testing.T) {
		r := rawDial(t, gw.tcp)
		junk := make([]byte, 4096)
		_, _ = rand.Read(junk)
		junk[0] = 0x7f // a length prefix far above the limit
		r.sendRaw(junk)
		e := r.expectError(parleyv1.ErrorCode_ERROR_CODE_FRAME_TOO_LARGE)
		if !e.GetFatal() {
			t.Fatal("FRAME_TOO_LARGE not fatal")
		}
		r.expectClosed()
		stillWorks("random bytes")
	})
	t.Run("oversized length prefix after handshake", func(t *testing.T) {
		r := rawDial(t, gw.tcp)
		r.hello()
		r.sendRaw(binary.BigEndian.AppendUint32(nil, 64<<20))
		r.expectError(parleyv1.ErrorCode_ERROR_CODE_FRAME_TOO_LARGE)
		r.expectClosed()
		stillWorks("oversized prefix")
	})
	t.Run("wrong protocol version", func(t *testing.T) {
		r := rawDial(t, gw.tcp)
		r.send(&parleyv1.Frame{RequestId: 1, Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{Versions: []uint32{7, 9}}}})
		r.expectError(parleyv1.ErrorCode_ERROR_CODE_UNSUPPORTED_VERSION)
		r.expectClosed()
		_, err := parley.Dial(ctxS(t), "tcp://"+gw.tcp) // the SDK's own handshake still works
		if err != nil {
			t.Fatal(err)
		}
		stillWorks("wrong version")
	})
	t.Run("invalid utf-8", func(t *testing.T) {
		r := rawDial(t, gw.tcp)
		r.hello()
		// Frame{request_id: 2, login: {username: "\xff\xfe", password: "x"}}
		body := []byte{0x08, 0x02, 0x5a, 0x07, 0x0a, 0x02, 0xff, 0xfe, 0x12, 0x01, 'x'}
		r.sendRaw(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...))
		r.expectError(parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8)
		// The connection survives and answers a ping.
		r.send(&parleyv1.Frame{RequestId: 3, Body: &parleyv1.Frame_Ping{Ping: &parleyv1.Ping{Nonce: 5}}})
		f, err := r.rd.ReadFrame()
		if err != nil || f.GetPong().GetNonce() != 5 {
			t.Fatalf("pong after invalid utf-8: %v %v", f, err)
		}
		stillWorks("invalid utf-8")
	})
	t.Run("wrong password and unknown user", func(t *testing.T) {
		cl := dial(t, "tcp://"+gw.tcp)
		_, err := cl.Login(ctxS(t), victim.Username, "not the password at all")
		wantErr(t, err, parley.ErrBadCredentials)
		_, err = cl.Login(ctxS(t), "nosuchuser", "whatever password")
		wantErr(t, err, parley.ErrBadCredentials)
		stillWorks("wrong password")
	})
	t.Run("forged token", func(t *testing.T) {
		cl := dial(t, "tcp://"+gw.tcp)
		parts := strings.Split(victim.Token, ".")
		if len(parts) != 3 {
			t.Fatalf("token %q is not v1.payload.mac", victim.Token)
		}
		// Keep the payload, forge the signature.
		forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
		_, err := cl.Resume(ctxS(t), forged)
		wantErr(t, err, parley.ErrTokenInvalid)
		_, err = cl.Resume(ctxS(t), "garbage")
		wantErr(t, err, parley.ErrTokenInvalid)
		stillWorks("forged token")
	})
	t.Run("request before login", func(t *testing.T) {
		cl := dial(t, "tcp://"+gw.tcp)
		_, err := cl.Who(ctxS(t))
		wantErr(t, err, parley.ErrUnauthenticated)
	})
}

// TestExpiredToken: a token past its lifetime gets TOKEN_EXPIRED.
func TestExpiredToken(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{tokenTTL: "2s"})
	gw := c.gateways[0]
	_, s := registered(t, "tcp://"+gw.tcp, "alice")
	time.Sleep(3 * time.Second) // the token's lifetime is the thing under test
	cl := dial(t, "tcp://"+gw.tcp)
	_, err := cl.Resume(ctxS(t), s.Token)
	wantErr(t, err, parley.ErrTokenExpired)
}
