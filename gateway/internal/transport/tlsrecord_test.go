package transport

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/wire"
)

const testMaxFrame = 4 << 20

// tlsEnv is a server certificate and the client configuration that trusts
// it.
type tlsEnv struct {
	server *tls.Config
	client *tls.Config
	caFile string
}

func newTLSEnv(t testing.TB) *tlsEnv {
	t.Helper()
	ca := testenv.NewCA(t)
	p := ca.Server(t, "gateway")
	cert, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &tlsEnv{
		server: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		client: &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"},
		caFile: ca.File,
	}
}

// tlsConn is one handshaken connection: the gateway's stream and the
// client's tls.Conn over its raw socket.
type tlsConn struct {
	s      *Stream
	c      *tls.Conn
	raw    *net.TCPConn // the client's socket, under c
	client keyLog       // the client's traffic secrets
}

// dialTLS connects a crypto/tls client to a NewTLSStream over loopback
// TCP.
func dialTLS(t testing.TB, server *TLSConfig, client *tls.Config) *tlsConn {
	t.Helper()
	srv, cli := tcpPair(t)
	tc := &tlsConn{raw: cli}
	client = client.Clone()
	client.KeyLogWriter = &tc.client
	tc.c = tls.Client(cli, client)
	done := make(chan error, 1)
	go func() { done <- tc.c.Handshake() }()
	s, err := NewTLSStream(srv, server, testMaxFrame, 5*time.Second)
	if err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	tc.s = s
	t.Cleanup(func() { s.Close() })
	t.Cleanup(func() { cli.Close() }) // first: the gateway's close need not linger
	return tc
}

// frame is body with its length prefix.
func frame(body []byte) []byte {
	out := make([]byte, 4, 4+len(body))
	out[0], out[1], out[2], out[3] = byte(len(body)>>24), byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
	return append(out, body...)
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// readFrame reads a frame on the gateway's side.
func readFrame(t testing.TB, s *Stream) []byte {
	t.Helper()
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second)) // a failure, not a hang
	b, err := s.ReadFrame()
	if err != nil {
		t.Fatalf("ReadFrame: %v", err)
	}
	out := bytes.Clone(*b)
	wire.PutRaw(b)
	return out
}

// TestTLSRecordsEcho: after a TLS 1.3 handshake the gateway protects the
// records itself, and small and large (many records) payloads travel both
// ways intact, with session tickets on (crypto/tls sent some under the
// application key: our write sequence number starts after them) and off.
func TestTLSRecordsEcho(t *testing.T) {
	env := newTLSEnv(t)
	for _, tickets := range []bool{true, false} {
		t.Run(map[bool]string{true: "tickets", false: "no-tickets"}[tickets], func(t *testing.T) {
			sc := env.server.Clone()
			sc.SessionTicketsDisabled = !tickets
			cc := env.client.Clone()
			// Without a session cache a Go client asks for no tickets.
			cc.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			tc := dialTLS(t, NewTLSConfig(sc, true), cc)
			if tc.s.rec == nil {
				t.Fatal("the gateway left the TLS 1.3 records to crypto/tls")
			}
			if got := tc.s.rec.out.seq; (got > 0) != tickets {
				t.Errorf("write sequence number after the handshake = %d with tickets %v", got, tickets)
			}
			if tc.s.Host() != "localhost" {
				t.Errorf("Host = %q, want the SNI localhost", tc.s.Host())
			}
			for _, n := range []int{1, 100, 16 << 10, 1 << 20} {
				up := randomBytes(t, n)
				go func() { _, _ = tc.c.Write(frame(up)) }()
				if got := readFrame(t, tc.s); !bytes.Equal(got, up) {
					t.Fatalf("%d bytes up: got %d bytes, not the same", n, len(got))
				}
				down := randomBytes(t, n)
				go func() { _ = tc.s.Write(down) }()
				got := make([]byte, n)
				if _, err := io.ReadFull(tc.c, got); err != nil || !bytes.Equal(got, down) {
					t.Fatalf("%d bytes down: %v, same %v", n, err, bytes.Equal(got, down))
				}
			}
			// Our KeyUpdate, read by crypto/tls's client.
			before := tc.s.rec.out.secretCopy()
			tc.s.rec.keyUpdate.Store(true)
			go func() { _ = tc.s.Write([]byte("new key")) }()
			b := make([]byte, 7)
			if _, err := io.ReadFull(tc.c, b); err != nil || string(b) != "new key" {
				t.Fatalf("after our KeyUpdate: %q %v", b, err)
			}
			if tc.s.rec.out.secretCopy() == before {
				t.Fatal("no KeyUpdate was sent")
			}
			// Many small writes each way.
			var want bytes.Buffer
			go func() {
				for i := range 300 {
					_ = tc.s.Write([]byte{byte(i)})
				}
			}()
			for i := range 300 {
				want.WriteByte(byte(i))
			}
			got := make([]byte, 300)
			if _, err := io.ReadFull(tc.c, got); err != nil || !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("300 writes: %v", err)
			}
			go func() {
				for i := range 300 {
					_, _ = tc.c.Write(frame([]byte{byte(i)}))
				}
			}()
			for i := range 300 {
				if got := readFrame(t, tc.s); len(got) != 1 || got[0] != byte(i) {
					t.Fatalf("frame %d: %v", i, got)
				}
			}
		})
	}
}

// TestTLSRecordsResumption: a client resumes its session on a second
// connection (the tickets written before the takeover are valid and the
// ticket keys are shared by all connections).
func TestTLSRecordsResumption(t *testing.T) {
	env := newTLSEnv(t)
	sc := NewTLSConfig(env.server, true)
	cc := env.client.Clone()
	cc.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		tc := dialTLS(t, sc, cc)
		if tc.s.rec == nil {
			t.Fatal("records left to crypto/tls")
		}
		if resumed := tc.c.ConnectionState().DidResume; resumed != (i == 1) {
			t.Fatalf("connection %d: resumed %v", i, resumed)
		}
		if tc.s.rec.out.seq == 0 {
			t.Fatal("no ticket counted")
		}
		// The client reads the tickets with the first data.
		go func() { _ = tc.s.Write([]byte("hi")) }()
		b := make([]byte, 2)
		if _, err := io.ReadFull(tc.c, b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTLS12KeepsCryptoTLS: a TLS 1.2 client is served by crypto/tls's
// records, as with -tls-records=go.
func TestTLS12KeepsCryptoTLS(t *testing.T) {
	env := newTLSEnv(t)
	cc := env.client.Clone()
	cc.MaxVersion = tls.VersionTLS12
	for _, own := range []bool{true, false} {
		tc := dialTLS(t, NewTLSConfig(env.server, own), cc)
		if tc.s.rec != nil {
			t.Fatal("the gateway took over a TLS 1.2 connection's records")
		}
		go func() { _, _ = tc.c.Write(frame([]byte("twelve"))) }()
		if got := readFrame(t, tc.s); string(got) != "twelve" {
			t.Fatalf("got %q", got)
		}
		if tc.s.Host() != "localhost" {
			t.Errorf("Host = %q", tc.s.Host())
		}
	}
	tc := dialTLS(t, NewTLSConfig(env.server, false), env.client)
	if tc.s.rec != nil {
		t.Fatal("records taken over with ownRecords off")
	}
}

// TestTLSRecordsTryWrite: TryWrite over TLS writes what the socket takes
// and keeps the rest of the ciphertext; a client that stops reading fills
// the socket, and once it reads again it gets every byte in order.
func TestTLSRecordsTryWrite(t *testing.T) {
	env := newTLSEnv(t)
	tc := dialTLS(t, NewTLSConfig(env.server, true), env.client)
	var sent bytes.Buffer
	chunk := 0
	for {
		b := bytes.Repeat([]byte{byte(chunk)}, 3000+chunk%7)
		chunk++
		ok, err := tc.s.TryWrite(b)
		if err != nil {
			t.Fatalf("TryWrite: %v", err)
		}
		sent.Write(b)
		if !ok {
			break
		}
		if sent.Len() > 64<<20 {
			t.Fatal("the socket never filled")
		}
	}
	if tc.s.rec.tail == nil {
		t.Fatal("a TryWrite that did not send all kept no tail")
	}
	if _, err := tc.s.TryWrite([]byte("x")); !errors.Is(err, ErrNoTryWrite) {
		t.Fatalf("TryWrite with a tail: %v, want ErrNoTryWrite", err)
	}
	last := []byte("the end")
	sent.Write(last)
	errc := make(chan error, 1)
	go func() { errc <- tc.s.Write(last) }() // the tail, then last
	got := make([]byte, sent.Len())
	if _, err := io.ReadFull(tc.c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, sent.Bytes()) {
		t.Fatal("the client read other bytes than were written")
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if ok, err := tc.s.TryWrite([]byte("again")); !ok || err != nil {
		t.Fatalf("TryWrite after the tail went: %v %v", ok, err)
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(tc.c, b); err != nil || string(b) != "again" {
		t.Fatalf("%q %v", b, err)
	}
}

// TestTLSRecordsCloseNotify: close_notify ends the stream cleanly both
// ways (io.EOF on either side).
func TestTLSRecordsCloseNotify(t *testing.T) {
	env := newTLSEnv(t)
	tc := dialTLS(t, NewTLSConfig(env.server, true), env.client)
	if err := tc.c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = tc.s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := tc.s.ReadFrame(); err != io.EOF {
		t.Fatalf("gateway read after the client's close_notify: %v, want io.EOF", err)
	}
	_ = tc.s.Write([]byte("last words"))
	closed := make(chan error, 1)
	go func() { closed <- tc.s.Close() }()
	got, err := io.ReadAll(tc.c)
	if err != nil || string(got) != "last words" {
		t.Fatalf("client read %q, %v; want the last words then io.EOF", got, err)
	}
	tc.c.Close()
	<-closed
}

// TestTLSRecordsSweep: an idle connection's AEADs are released by the
// sweeper, and the connection works after.
func TestTLSRecordsSweep(t *testing.T) {
	old := sweepPeriod.Load()
	sweepPeriod.Store(int64(20 * time.Millisecond))
	t.Cleanup(func() { sweepPeriod.Store(old) })
	env := newTLSEnv(t)
	tc := dialTLS(t, NewTLSConfig(env.server, true), env.client)
	echo := func(msg string) {
		t.Helper()
		go func() { _, _ = tc.c.Write(frame([]byte(msg))) }()
		if got := readFrame(t, tc.s); string(got) != msg {
			t.Fatalf("up: %q", got)
		}
		go func() { _ = tc.s.Write([]byte(msg)) }()
		b := make([]byte, len(msg))
		if _, err := io.ReadFull(tc.c, b); err != nil || string(b) != msg {
			t.Fatalf("down: %q %v", b, err)
		}
	}
	held := func() bool {
		rc := tc.s.rec
		rc.in.mu.Lock()
		in := rc.in.aead != nil
		rc.in.mu.Unlock()
		rc.out.mu.Lock()
		out := rc.out.aead != nil
		rc.out.mu.Unlock()
		return in || out
	}
	echo("one")
	if !held() {
		t.Fatal("no AEAD after use")
	}
	deadline := time.Now().Add(10 * time.Second)
	for held() {
		if time.Now().After(deadline) {
			t.Fatal("the sweeper did not release the idle connection's AEADs")
		}
		time.Sleep(5 * time.Millisecond)
	}
	sweeper.mu.Lock()
	_, in := sweeper.set[&tc.s.rec.in]
	_, out := sweeper.set[&tc.s.rec.out]
	sweeper.mu.Unlock()
	if in || out {
		t.Error("a released direction stayed in the sweeper's set")
	}
	echo("two")
}

// clientRecords is a record layer for the client's side of tc, for
// sending what crypto/tls would not: it seals with the client's key from
// the client's first application record on. Only for connections whose
// server sent nothing after the handshake (no tickets).
func clientRecords(t testing.TB, tc *tlsConn) *recordConn {
	t.Helper()
	suite := suiteByID(tc.c.ConnectionState().CipherSuite)
	rc := &recordConn{conn: tc.raw, rd: tc.raw, suite: suite}
	if err := rc.out.keys.setSecret(suite, tc.client.client); err != nil {
		t.Fatal(err)
	}
	if err := rc.in.keys.setSecret(suite, tc.client.server); err != nil {
		t.Fatal(err)
	}
	return rc
}

// sendRaw writes b on the client's socket, under its tls.Conn.
func sendRaw(t testing.TB, tc *tlsConn, b []byte) {
	t.Helper()
	if _, err := tc.raw.Write(b); err != nil {
		t.Fatal(err)
	}
}

func sealedRecord(t testing.TB, rc *recordConn, typ byte, content []byte) []byte {
	t.Helper()
	rc.out.mu.Lock()
	defer rc.out.mu.Unlock()
	b, err := rc.sealRecord(nil, typ, content)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTLSRecordsHostile: records a client must not send end its
// connection with the right alert (sent to the client, which reads it
// under the server's key), and the gateway serves other connections on.
func TestTLSRecordsHostile(t *testing.T) {
	env := newTLSEnv(t)
	sc := env.server.Clone()
	sc.SessionTicketsDisabled = true
	conf := NewTLSConfig(sc, true)
	cases := []struct {
		name    string
		send    func(t *testing.T, tc *tlsConn)
		alert   string // the alert the gateway sends, as crypto/tls names it; "": none expected
		readErr string // in the gateway's read error
	}{
		{"corrupted ciphertext", func(t *testing.T, tc *tlsConn) {
			r := sealedRecord(t, clientRecords(t, tc), recordApplicationData, frame([]byte("hello")))
			r[len(r)-3] ^= 1
			sendRaw(t, tc, r)
		}, "bad record MAC", "authentication failed"},
		{"record too long", func(t *testing.T, tc *tlsConn) {
			sendRaw(t, tc, []byte{recordApplicationData, 3, 3, 0x41, 0x01})
		}, "record overflow", "too long"},
		{"plaintext change_cipher_spec", func(t *testing.T, tc *tlsConn) {
			sendRaw(t, tc, []byte{recordChangeCipherSpec, 3, 3, 0, 1, 1})
		}, "unexpected message", "unprotected"},
		{"plaintext alert", func(t *testing.T, tc *tlsConn) {
			sendRaw(t, tc, []byte{recordAlert, 3, 3, 0, 2, 2, 0})
		}, "unexpected message", "unprotected"},
		{"record too short for a tag", func(t *testing.T, tc *tlsConn) {
			sendRaw(t, tc, []byte{recordApplicationData, 3, 3, 0, 3, 1, 2, 3})
		}, "bad record MAC", "too short"},
		{"empty inner plaintext", func(t *testing.T, tc *tlsConn) {
			sendRaw(t, tc, sealedRecord(t, clientRecords(t, tc), 0, []byte{0, 0}))
		}, "unexpected message", "without a content type"},
		{"unknown inner type", func(t *testing.T, tc *tlsConn) {
			sendRaw(t, tc, sealedRecord(t, clientRecords(t, tc), 99, []byte("x")))
		}, "unexpected message", "content type"},
		{"garbage handshake message", func(t *testing.T, tc *tlsConn) {
			sendRaw(t, tc, sealedRecord(t, clientRecords(t, tc), recordHandshake, []byte{0xee, 0, 0, 1, 0}))
		}, "unexpected message", "post-handshake"},
		{"NewSessionTicket from the client", func(t *testing.T, tc *tlsConn) {
			sendRaw(t, tc, sealedRecord(t, clientRecords(t, tc), recordHandshake, []byte{4, 0, 0, 0}))
		}, "unexpected message", "post-handshake"},
		{"malformed KeyUpdate", func(t *testing.T, tc *tlsConn) {
			sendRaw(t, tc, sealedRecord(t, clientRecords(t, tc), recordHandshake, []byte{keyUpdateType, 0, 0, 2, 0, 0}))
		}, "error decoding message", "malformed KeyUpdate"},
		{"KeyUpdate with a bad request_update", func(t *testing.T, tc *tlsConn) {
			sendRaw(t, tc, sealedRecord(t, clientRecords(t, tc), recordHandshake, []byte{keyUpdateType, 0, 0, 1, 2}))
		}, "illegal parameter", "request_update"},
		{"inner plaintext too long", func(t *testing.T, tc *tlsConn) {
			rc := clientRecords(t, tc)
			rc.out.mu.Lock()
			aead, _ := rc.out.cipher(rc.suite)
			content := make([]byte, maxPlaintext+1, maxPlaintext+2+aeadTagLen)
			content = append(content, recordApplicationData)
			n := len(content) + aeadTagLen
			hdr := []byte{recordApplicationData, 3, 3, byte(n >> 8), byte(n)}
			nonce := rc.out.nonce()
			rec := append(hdr, aead.Seal(nil, nonce[:], content, hdr)...)
			rc.out.mu.Unlock()
			sendRaw(t, tc, rec)
		}, "record overflow", "plaintext too long"},
		{"too many empty records", func(t *testing.T, tc *tlsConn) {
			rc := clientRecords(t, tc)
			var b []byte
			for range maxUselessRecords + 1 {
				b = append(b, sealedRecord(t, rc, recordApplicationData, nil)...)
			}
			sendRaw(t, tc, b)
		}, "unexpected message", "without application data"},
		{"truncated record then end", func(t *testing.T, tc *tlsConn) {
			r := sealedRecord(t, clientRecords(t, tc), recordApplicationData, frame([]byte("hello")))
			sendRaw(t, tc, r[:len(r)-4])
			_ = tc.raw.CloseWrite()
		}, "", io.ErrUnexpectedEOF.Error()},
		{"a fatal alert from the client", func(t *testing.T, tc *tlsConn) {
			sendRaw(t, tc, sealedRecord(t, clientRecords(t, tc), recordAlert, []byte{2, alertInternalError}))
		}, "", "peer sent alert 80"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc := dialTLS(t, conf, env.client)
			if tc.s.rec == nil {
				t.Fatal("records left to crypto/tls")
			}
			c.send(t, tc)
			_ = tc.s.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := tc.s.ReadFrame()
			if err == nil || !strings.Contains(err.Error(), c.readErr) {
				t.Fatalf("gateway read: %v, want an error with %q", err, c.readErr)
			}
			if c.alert != "" {
				// The client reads the alert under the server's key.
				_ = tc.raw.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, rerr := tc.c.Read(make([]byte, 1))
				if want := "remote error: tls: " + c.alert; rerr == nil || rerr.Error() != want {
					t.Errorf("client read %v, want %q", rerr, want)
				}
			}
			if err := tc.s.Write([]byte("more")); err == nil && c.alert != "" {
				t.Error("the gateway wrote after a fatal alert")
			}
			// Another connection is served as ever.
			other := dialTLS(t, conf, env.client)
			go func() { _, _ = other.c.Write(frame([]byte("fine"))) }()
			if got := readFrame(t, other.s); string(got) != "fine" {
				t.Fatalf("other connection: %q", got)
			}
		})
	}
}

// TestTLSRecordsKeyUpdate: a client's KeyUpdate moves the gateway's read
// key; with update_requested the gateway answers with its own before its
// next data (checked by the client reading that data under the updated
// key). Both sides here are our record layer; tlsopenssl_test.go checks
// the same against openssl.
func TestTLSRecordsKeyUpdate(t *testing.T) {
	env := newTLSEnv(t)
	sc := env.server.Clone()
	sc.SessionTicketsDisabled = true
	tc := dialTLS(t, NewTLSConfig(sc, true), env.client)
	cl := clientRecords(t, tc)
	for _, requested := range []byte{0, 1, 1, 0} {
		cl.out.mu.Lock()
		b, err := cl.sealRecord(nil, recordHandshake, []byte{keyUpdateType, 0, 0, 1, requested})
		if err == nil {
			err = cl.out.rekey(cl.suite)
		}
		cl.out.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		sendRaw(t, tc, b)
		if _, err := cl.Write(frame([]byte("after update"))); err != nil {
			t.Fatal(err)
		}
		if got := readFrame(t, tc.s); string(got) != "after update" {
			t.Fatalf("got %q", got)
		}
		var wg sync.WaitGroup
		wg.Go(func() { _ = tc.s.Write([]byte("reply")) })
		got := make([]byte, 5)
		if _, err := io.ReadFull(cl, got); err != nil || string(got) != "reply" {
			t.Fatalf("reply after KeyUpdate(%d): %q %v", requested, got, err)
		}
		wg.Wait()
	}
}

// TestTLSRecordsRekeyAfterLimit: after rekeyAfter records under one key the
// gateway sends its own KeyUpdate and goes on under the next key (AES-GCM's
// limit, RFC 8446 §5.5). The client here is our record layer, its read
// sequence number moved along with the gateway's write one.
func TestTLSRecordsRekeyAfterLimit(t *testing.T) {
	env := newTLSEnv(t)
	sc := env.server.Clone()
	sc.SessionTicketsDisabled = true
	tc := dialTLS(t, NewTLSConfig(sc, true), env.client)
	cl := clientRecords(t, tc)
	rc := tc.s.rec
	rc.out.mu.Lock()
	rc.out.seq = rekeyAfter - 1
	before := rc.out.keys.secret
	rc.out.mu.Unlock()
	cl.in.seq = rekeyAfter - 1
	data := randomBytes(t, maxPlaintext+100) // two records: the limit falls between them
	go func() { _ = tc.s.Write(data) }()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(cl, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read across the gateway's KeyUpdate: %v", err)
	}
	rc.out.mu.Lock()
	seq, after := rc.out.seq, rc.out.keys.secret
	rc.out.mu.Unlock()
	if seq != 1 || after == before {
		t.Fatalf("after the limit: write sequence number %d (want 1), key changed %v", seq, after != before)
	}
}

// holdConn passes the first write through and keeps the later ones until
// release, which sends them in one write.
type holdConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
	held   []byte
}

func (h *holdConn) Write(b []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.writes++
	if h.writes == 1 {
		return h.Conn.Write(b)
	}
	h.held = append(h.held, b...)
	return len(b), nil
}

func (h *holdConn) release() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.Conn.Write(h.held)
	return err
}

// TestTLSRecordsDataWithFinished: the client's first application data
// arrives in the same segment as its Finished. crypto/tls reads up to the
// end of the Finished record only (handshakeConn), so the data is left in
// the socket for the gateway's record layer.
func TestTLSRecordsDataWithFinished(t *testing.T) {
	env := newTLSEnv(t)
	srv, cli := tcpPair(t)
	hc := &holdConn{Conn: cli}
	c := tls.Client(hc, env.client)
	done := make(chan error, 1)
	go func() {
		if err := c.Handshake(); err != nil {
			done <- err
			return
		}
		if _, err := c.Write(frame([]byte("right after Finished"))); err != nil {
			done <- err
			return
		}
		done <- hc.release()
	}()
	s, err := NewTLSStream(srv, NewTLSConfig(env.server, true), testMaxFrame, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.rec == nil {
		t.Fatal("records left to crypto/tls")
	}
	if got := readFrame(t, s); string(got) != "right after Finished" {
		t.Fatalf("got %q", got)
	}
}

// TestTLSRecordsTryWriteStaleDeadline: a write deadline an earlier Write
// left armed (the gateway's outbox does not clear it) refuses a later
// TryWrite before the socket takes anything. The records are sealed by
// then, so they are kept as the tail and the next Write sends them: the
// connection goes on, in order. (They used to end the stream, and the
// gateway closed busy TLS connections as slow consumers 10 s after their
// first flushed write.)
func TestTLSRecordsTryWriteStaleDeadline(t *testing.T) {
	env := newTLSEnv(t)
	tc := dialTLS(t, NewTLSConfig(env.server, true), env.client)
	if err := tc.s.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	ok, err := tc.s.TryWrite([]byte("first"))
	if ok || err != nil {
		t.Fatalf("TryWrite past the deadline: sent %v, err %v; want kept, no error", ok, err)
	}
	if err := tc.s.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := tc.s.Write([]byte("second")); err != nil {
		t.Fatalf("Write after the kept records: %v", err)
	}
	if ok, err := tc.s.TryWrite([]byte("third")); !ok || err != nil {
		t.Fatalf("TryWrite under a live deadline: %v %v", ok, err)
	}
	_ = tc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len("firstsecondthird"))
	if _, err := io.ReadFull(tc.c, got); err != nil || string(got) != "firstsecondthird" {
		t.Fatalf("client read %q, %v", got, err)
	}
}

// TestTLSRecordsNothingAfterFatalAlert: RFC 8446 §6.2, no data after a
// fatal alert, either way. After the client's fatal alert the gateway
// writes nothing more (no close_notify either); after its own, sent while
// a write held the lock, nothing but that alert follows what was written.
func TestTLSRecordsNothingAfterFatalAlert(t *testing.T) {
	env := newTLSEnv(t)
	sc := env.server.Clone()
	sc.SessionTicketsDisabled = true
	conf := NewTLSConfig(sc, true)

	t.Run("the client's alert", func(t *testing.T) {
		tc := dialTLS(t, conf, env.client)
		sendRaw(t, tc, sealedRecord(t, clientRecords(t, tc), recordAlert, []byte{2, 40})) // handshake_failure
		_ = tc.s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := tc.s.ReadFrame(); err == nil || !strings.Contains(err.Error(), "alert 40") {
			t.Fatalf("ReadFrame after the client's fatal alert: %v", err)
		}
		if err := tc.s.Write(frame([]byte("late"))); !errors.Is(err, errRecordsClosed) {
			t.Fatalf("Write after the client's fatal alert: %v, want errRecordsClosed", err)
		}
		if ok, err := tc.s.TryWrite(frame([]byte("late"))); ok || err == nil {
			t.Fatalf("TryWrite after the client's fatal alert: %v %v", ok, err)
		}
		_ = tc.s.rec.CloseWrite()
		_ = tc.raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := io.ReadAll(tc.raw); err != nil || len(b) != 0 {
			t.Fatalf("the gateway wrote %d bytes after the client's fatal alert (%v)", len(b), err)
		}
	})

	t.Run("ours, while a write held the lock", func(t *testing.T) {
		tc := dialTLS(t, conf, env.client)
		rc := tc.s.rec
		rc.out.mu.Lock() // a write under way
		r := sealedRecord(t, clientRecords(t, tc), recordApplicationData, frame([]byte("hello")))
		r[len(r)-3] ^= 1
		sendRaw(t, tc, r)
		_ = tc.s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := tc.s.ReadFrame(); err == nil {
			t.Fatal("ReadFrame read a corrupted record")
		}
		rc.out.mu.Unlock()
		if err := tc.s.Write(frame([]byte("late"))); !errors.Is(err, errRecordsClosed) {
			t.Fatalf("Write after our fatal alert: %v, want errRecordsClosed", err)
		}
		_ = rc.CloseWrite()
		_ = tc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := tc.c.Read(make([]byte, 16)); err == nil || !strings.Contains(err.Error(), "bad record MAC") {
			t.Fatalf("client read %v, want the bad_record_mac alert and nothing before it", err)
		}
	})
}

// TestTLSRecordsClosedKeys: after Close nothing is built from the zeroed
// keys (a record sealed under an all-zero secret would otherwise open).
func TestTLSRecordsClosedKeys(t *testing.T) {
	env := newTLSEnv(t)
	tc := dialTLS(t, NewTLSConfig(env.server, true), env.client)
	rc := tc.s.rec
	_ = tc.s.Close()
	rc.in.mu.Lock()
	_, err := rc.in.cipher(rc.suite)
	rc.in.mu.Unlock()
	if !errors.Is(err, errRecordsClosed) {
		t.Fatalf("an AEAD after Close: %v, want errRecordsClosed", err)
	}
}
