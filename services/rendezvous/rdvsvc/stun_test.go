package rdvsvc_test

import (
	"encoding/binary"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// changeRequest is a CHANGE-REQUEST attribute (RFC 5780 §7.2).
type changeRequest struct{ ip, port bool }

func (c changeRequest) AddTo(m *stun.Message) error {
	var v [4]byte
	var f uint32
	if c.ip {
		f |= 0x04
	}
	if c.port {
		f |= 0x02
	}
	binary.BigEndian.PutUint32(v[:], f)
	m.Add(stun.AttrChangeRequest, v[:])
	return nil
}

// rawAttr adds any attribute as given.
type rawAttr struct {
	t stun.AttrType
	v []byte
}

func (a rawAttr) AddTo(m *stun.Message) error { m.Add(a.t, a.v); return nil }

// TestAnswersAmplifyAtMostThreefold: no answer is longer than three times
// its request (QUIC's anti-amplification factor), whatever the request:
// the source of a STUN request can be spoofed, and the rendezvous must not
// be worth an attacker's while as a reflector. What must go is left out
// in order (SOFTWARE, RESPONSE-ORIGIN, OTHER-ADDRESS); FINGERPRINT comes
// only when the request had one.
func TestAnswersAmplifyAtMostThreefold(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	c := newClient(t, "127.0.0.1")
	has := func(m *stun.Message, a stun.AttrType) bool { return m.Contains(a) }
	for _, tc := range []struct {
		name              string
		req               *stun.Message
		code              int // 0: a success
		other, origin, sw bool
	}{
		{"bare, 20 bytes", request(), 0, true, true, false},
		{"with FINGERPRINT", request(stun.Fingerprint), 0, true, true, false},
		{"with SOFTWARE", request(stun.NewSoftware("some client"), stun.Fingerprint), 0, true, true, true},
		{"padded", request(rawAttr{stun.AttrPadding, make([]byte, 100)}), 0, true, true, true},
		{"unknown attribute (420)", request(rawAttr{0x001e, []byte{1}}), 420, false, false, false},
		{"RESPONSE-PORT of 2 bytes (400)", request(rawAttr{stun.AttrResponsePort, []byte{0x12, 0x34}}), 400, false, false, false},
		{"USERNAME alone (400)", request(stun.NewUsername("p:a")), 400, false, false, false},
		{"unknown session (401)", request(stun.NewUsername("p000000000000000000000000:a"), stun.NewShortTermIntegrity("k"), stun.Fingerprint), 401, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := c.do(r.primary, tc.req)
			t.Logf("%d-byte request, %d-byte answer (%.2fx)", len(tc.req.Raw), len(res.Raw), float64(len(res.Raw))/float64(len(tc.req.Raw)))
			if len(res.Raw) > 3*len(tc.req.Raw) {
				t.Errorf("a %d-byte request answered with %d bytes: over 3x", len(tc.req.Raw), len(res.Raw))
			}
			if tc.code == 0 {
				if res.Type != stun.BindingSuccess {
					t.Fatalf("answer %s, want a success", res.Type)
				}
				if got := mapped(t, res); got != c.addr() {
					t.Errorf("XOR-MAPPED-ADDRESS %s, want %s", got, c.addr())
				}
			} else {
				var ec stun.ErrorCodeAttribute
				if err := ec.GetFrom(res); err != nil || int(ec.Code) != tc.code {
					t.Fatalf("answer %s %v (%v), want error %d", res.Type, ec.Code, err, tc.code)
				}
			}
			if tc.code == 0 && (has(res, stun.AttrOtherAddress) != tc.other || has(res, stun.AttrResponseOrigin) != tc.origin) {
				t.Errorf("OTHER-ADDRESS %v, RESPONSE-ORIGIN %v; want %v, %v", has(res, stun.AttrOtherAddress), has(res, stun.AttrResponseOrigin), tc.other, tc.origin)
			}
			if tc.code == 0 && has(res, stun.AttrSoftware) != tc.sw {
				t.Errorf("SOFTWARE %v, want %v", has(res, stun.AttrSoftware), tc.sw)
			}
			if want := tc.req.Contains(stun.AttrFingerprint); has(res, stun.AttrFingerprint) != want {
				t.Errorf("FINGERPRINT %v, want %v (as the request)", has(res, stun.AttrFingerprint), want)
			}
		})
	}
}

// A plain Binding to each of the four sockets is answered from that socket
// with the address it came from, where it left from, the other IP and port,
// SOFTWARE and a valid FINGERPRINT (the request is long enough for all of
// them: TestAnswersAmplifyAtMostThreefold).
func TestBindingAttributes(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	if r.primary.Addr() == r.alt.Addr() || r.primary.Port() == r.alt.Port() {
		t.Fatalf("primary %s and alternate %s must differ in IP and port", r.primary, r.alt)
	}
	primary, alt := r.svc.PublicAddrs()
	if primary != r.primary.String() || alt != r.alt.String() {
		t.Fatalf("public addresses %s %s, want the bound %s %s", primary, alt, r.primary, r.alt)
	}
	c := newClient(t, "127.0.0.1")
	for i := range 2 {
		for j := range 2 {
			to := r.socketAddr(i, j)
			t.Run(to.String(), func(t *testing.T) {
				res, from := c.do(to, request(stun.NewSoftware("parley test"), stun.Fingerprint))
				if res.Type != stun.BindingSuccess {
					t.Fatalf("answer %s, want a Binding success", res.Type)
				}
				if from != to {
					t.Errorf("answer came from %s, want %s", from, to)
				}
				if got := mapped(t, res); got != c.addr() {
					t.Errorf("XOR-MAPPED-ADDRESS %s, want the client's %s", got, c.addr())
				}
				var origin stun.ResponseOrigin
				if err := origin.GetFrom(res); err != nil {
					t.Fatal(err)
				}
				if got := addrPort(t, origin.IP, origin.Port); got != to {
					t.Errorf("RESPONSE-ORIGIN %s, want %s", got, to)
				}
				var other stun.OtherAddress
				if err := other.GetFrom(res); err != nil {
					t.Fatal(err)
				}
				if got, want := addrPort(t, other.IP, other.Port), r.socketAddr(1-i, 1-j); got != want {
					t.Errorf("OTHER-ADDRESS %s, want %s", got, want)
				}
				var sw stun.Software
				if err := sw.GetFrom(res); err != nil || sw.String() != "parley-rendezvous" {
					t.Errorf("SOFTWARE %q (%v)", sw, err)
				}
				if err := stun.Fingerprint.Check(res); err != nil {
					t.Errorf("FINGERPRINT: %v", err)
				}
				if res.Contains(stun.AttrMessageIntegrity) {
					t.Error("MESSAGE-INTEGRITY in the answer to an unauthenticated Binding")
				}
			})
		}
	}
	// Without FINGERPRINT in the request it is answered all the same.
	if res, _ := c.do(r.primary, request()); res.Type != stun.BindingSuccess {
		t.Fatalf("Binding without FINGERPRINT answered %s", res.Type)
	}
	if got := r.counter(t, "parley_rdv_stun_answered_total", "kind", "binding"); got < 5 {
		t.Errorf("parley_rdv_stun_answered_total{kind=binding} = %v, want at least 5", got)
	}
}

// Every CHANGE-REQUEST combination, at every socket, is answered from the
// socket with the other IP and/or port asked for, which the answer's
// RESPONSE-ORIGIN names.
func TestChangeRequest(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	c := newClient(t, "127.0.0.1")
	for i := range 2 {
		for j := range 2 {
			for _, ch := range []changeRequest{{false, false}, {false, true}, {true, false}, {true, true}} {
				to := r.socketAddr(i, j)
				wi, wj := i, j
				if ch.ip {
					wi = 1 - i
				}
				if ch.port {
					wj = 1 - j
				}
				want := r.socketAddr(wi, wj)
				t.Run(fmt.Sprintf("%s/ip=%v/port=%v", to, ch.ip, ch.port), func(t *testing.T) {
					res, from := c.do(to, request(ch, stun.Fingerprint))
					if res.Type != stun.BindingSuccess {
						t.Fatalf("answer %s (%d)", res.Type, errorOf(res))
					}
					if from != want {
						t.Errorf("answer came from %s, want %s", from, want)
					}
					var origin stun.ResponseOrigin
					if err := origin.GetFrom(res); err != nil {
						t.Fatal(err)
					}
					if got := addrPort(t, origin.IP, origin.Port); got != want {
						t.Errorf("RESPONSE-ORIGIN %s, want %s", got, want)
					}
					if got := mapped(t, res); got != c.addr() {
						t.Errorf("XOR-MAPPED-ADDRESS %s, want %s", got, c.addr())
					}
				})
			}
		}
	}
}

// With one address there is no OTHER-ADDRESS, and CHANGE-REQUEST is an
// unknown attribute (RFC 5780 §6.1): 420 naming it, even asking for no
// change.
func TestSingleAddress(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.STUNAltAddr = ""
	r := e.start(cfg)
	if r.alt.IsValid() {
		t.Fatalf("alternate %s bound without -stun-alt-addr", r.alt)
	}
	if _, alt := r.svc.PublicAddrs(); alt != "" {
		t.Fatalf("public alternate %q", alt)
	}
	c := newClient(t, "127.0.0.1")
	res, from := c.do(r.primary, request(stun.Fingerprint))
	if res.Type != stun.BindingSuccess || from != r.primary || mapped(t, res) != c.addr() {
		t.Fatalf("plain Binding: %s from %s", res.Type, from)
	}
	if res.Contains(stun.AttrOtherAddress) {
		t.Error("OTHER-ADDRESS from a server with one address")
	}
	for _, ch := range []changeRequest{{false, false}, {true, true}, {false, true}} {
		res, from := c.do(r.primary, request(ch, stun.Fingerprint))
		if res.Type != stun.BindingError || errorOf(res) != stun.CodeUnknownAttribute || from != r.primary {
			t.Fatalf("CHANGE-REQUEST %+v: %s %d from %s, want 420 from the primary", ch, res.Type, errorOf(res), from)
		}
		var unknown stun.UnknownAttributes
		if err := unknown.GetFrom(res); err != nil || !slices.Contains(unknown, stun.AttrChangeRequest) {
			t.Errorf("UNKNOWN-ATTRIBUTES %v (%v), want CHANGE-REQUEST", unknown, err)
		}
	}
}

// What is not a Binding request, or not a well-formed one, is dropped
// silently; a request with a comprehension-required attribute the server
// does not know is answered 420, one with a malformed CHANGE-REQUEST or
// USERNAME without MESSAGE-INTEGRITY 400.
func TestMalformed(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	c := newClient(t, "127.0.0.1")
	good := request(stun.Fingerprint)

	badFingerprint := request(stun.Fingerprint)
	badFingerprint.Raw[len(badFingerprint.Raw)-1] ^= 0xff
	indication, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication))
	allocate, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest))
	trailing := request()
	trailing.Raw = append(append([]byte(nil), trailing.Raw...), 0, 0, 0, 0)
	topBits := request()
	topBits.Raw = append([]byte(nil), topBits.Raw...)
	topBits.Raw[0] |= 0x80
	for name, req := range map[string]*stun.Message{
		"bad fingerprint": badFingerprint, "binding indication": indication, "allocate": allocate,
		"bytes after the message": trailing, "top bits set": topBits,
	} {
		c.send(r.primary, req)
		if res, _, ok := c.receive(req, 300*time.Millisecond); ok {
			t.Errorf("%s answered %s", name, res.Type)
		}
	}
	for _, junk := range [][]byte{nil, []byte("hello"), make([]byte, 20), make([]byte, 1400)} {
		if _, err := c.conn.WriteToUDPAddrPort(junk, r.primary); err != nil && len(junk) > 0 {
			t.Fatal(err)
		}
	}
	// Still answering.
	if res, _ := c.do(r.primary, good); res.Type != stun.BindingSuccess {
		t.Fatalf("Binding after junk: %s", res.Type)
	}
	if got := r.counter(t, "parley_rdv_stun_dropped_total", "reason", "malformed"); got < 8 {
		t.Errorf("dropped malformed %v, want at least 8", got)
	}

	for _, tc := range []struct {
		name string
		req  *stun.Message
		code stun.ErrorCode
	}{
		{"USERHASH", request(rawAttr{0x001e, make([]byte, 32)}, stun.Fingerprint), stun.CodeUnknownAttribute},
		{"RESPONSE-PORT of 2 bytes", request(rawAttr{stun.AttrResponsePort, []byte{0x12, 0x34}}, stun.Fingerprint), stun.CodeBadRequest},
		{"RESPONSE-PORT 0", request(rawAttr{stun.AttrResponsePort, []byte{0, 0, 0, 0}}, stun.Fingerprint), stun.CodeBadRequest},
		{"CHANGE-REQUEST of 2 bytes", request(rawAttr{stun.AttrChangeRequest, []byte{0, 4}}, stun.Fingerprint), stun.CodeBadRequest},
		{"USERNAME alone", request(stun.NewUsername("p000000000000000000000000:a"), stun.Fingerprint), stun.CodeBadRequest},
	} {
		res, from := c.do(r.primary, tc.req)
		if res.Type != stun.BindingError || errorOf(res) != tc.code || from != r.primary {
			t.Errorf("%s: %s %d from %s, want %d from the primary", tc.name, res.Type, errorOf(res), from, tc.code)
		}
		if tc.code == stun.CodeUnknownAttribute {
			var unknown stun.UnknownAttributes
			if err := unknown.GetFrom(res); err != nil || !slices.Equal(unknown, stun.UnknownAttributes{0x001e}) {
				t.Errorf("%s: UNKNOWN-ATTRIBUTES %v (%v)", tc.name, unknown, err)
			}
		}
	}
	// Comprehension-optional attributes the server does not know are
	// ignored, as is PADDING.
	if res, _ := c.do(r.primary, request(rawAttr{0x8099, []byte{1}}, rawAttr{stun.AttrPadding, make([]byte, 64)}, stun.Fingerprint)); res.Type != stun.BindingSuccess {
		t.Errorf("Binding with unknown optional attribute and PADDING: %s %d", res.Type, errorOf(res))
	}
}

// RESPONSE-PORT (RFC 5780 §7.5) sends the answer to that port of the
// request's IP, still naming the request's address in XOR-MAPPED-ADDRESS;
// PADDING in a request is answered with as much (§7.6).
func TestResponsePortAndPadding(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	c, other := newClient(t, "127.0.0.1"), newClient(t, "127.0.0.1")
	var port [4]byte
	binary.BigEndian.PutUint16(port[:], other.addr().Port())
	req := request(rawAttr{stun.AttrResponsePort, port[:]}, changeRequest{ip: true}, stun.Fingerprint)
	c.send(r.primary, req)
	res, from, ok := other.receive(req, 5*time.Second)
	if !ok {
		t.Fatal("no answer at the RESPONSE-PORT")
	}
	if res.Type != stun.BindingSuccess || mapped(t, res) != c.addr() || from != r.socketAddr(1, 0) {
		t.Fatalf("answer %s from %s mapping %s, want success from %s mapping %s", res.Type, from, mapped(t, res), r.socketAddr(1, 0), c.addr())
	}
	if _, _, ok := c.receive(req, 100*time.Millisecond); ok {
		t.Error("answered at the source port too")
	}

	res, _ = c.do(r.primary, request(rawAttr{stun.AttrPadding, make([]byte, 1400)}, stun.Fingerprint))
	p, err := res.Get(stun.AttrPadding)
	if res.Type != stun.BindingSuccess || err != nil || len(p) != 1400 {
		t.Fatalf("padded request: %s, PADDING of %d bytes (%v), want 1400", res.Type, len(p), err)
	}
	if err := stun.Fingerprint.Check(res); err != nil {
		t.Fatal(err)
	}
}

// A source address gets -stun-burst answers at once and -stun-rate a
// second after; others are not held back by it.
func TestRateLimit(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.STUNRate, cfg.STUNBurst = 1, 5
	r := e.start(cfg)
	flood := newClient(t, "127.0.0.1")
	var reqs []*stun.Message
	for range 30 {
		req := request(stun.Fingerprint)
		reqs = append(reqs, req)
		flood.send(r.primary, req)
	}
	answered := 0
	deadline := time.Now().Add(time.Second)
	buf := make([]byte, 2048)
	for {
		_ = flood.conn.SetReadDeadline(deadline)
		n, _, err := flood.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			break
		}
		var res stun.Message
		if stun.Decode(buf[:n], &res) == nil && slices.ContainsFunc(reqs, func(q *stun.Message) bool { return q.TransactionID == res.TransactionID }) {
			answered++
		}
	}
	// 5 at once, and at most one more refilled while they were sent.
	if answered < 5 || answered > 6 {
		t.Fatalf("%d of 30 requests answered, want the burst of 5 (or 6)", answered)
	}
	if got := r.counter(t, "parley_rdv_stun_dropped_total", "reason", "rate_limited"); got < 24 {
		t.Errorf("rate_limited drops %v, want at least 24", got)
	}
	// Another source is answered.
	other := newClient(t, "127.0.0.2")
	if res, _ := other.do(r.primary, request()); res.Type != stun.BindingSuccess {
		t.Fatalf("another source: %s", res.Type)
	}
}

// Off-the-shelf STUN clients nobody here wrote (coturn's) work against the
// rendezvous: turnutils_stunclient gets its mapped address and RFC 5780's
// answers from the other address; turnutils_natdiscovery classifies the
// (absent) NAT's mapping and filtering, which takes OTHER-ADDRESS, both
// addresses and every CHANGE-REQUEST.
func TestCoturnClients(t *testing.T) {
	stunclient, err := exec.LookPath("turnutils_stunclient")
	if err != nil {
		t.Fatal("turnutils_stunclient (Debian package coturn) is needed; scripts/deps.sh installs it")
	}
	natdiscovery, err := exec.LookPath("turnutils_natdiscovery")
	if err != nil {
		t.Fatal("turnutils_natdiscovery (Debian package coturn) is needed; scripts/deps.sh installs it")
	}
	e := newEnv(t)
	r := e.start(testConfig())
	port := strconv.Itoa(int(r.primary.Port()))
	run := func(bin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("%s %v did not finish within 60s:\n%s", bin, args, out)
		}
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
		}
		return string(out)
	}

	// turnutils_stunclient sees OTHER-ADDRESS, then asks (with
	// RESPONSE-PORT, then PADDING too) for answers from the other address,
	// and waits for each: it returns only if all of them came.
	altAddr := r.alt.String()
	for _, args := range [][]string{{"-p", port, "-L", "127.0.0.1", "127.0.0.1"}, {"-f", "-p", port, "127.0.0.1"}} {
		out := run(stunclient, args...)
		t.Logf("turnutils_stunclient %v:\n%s", args, out)
		for _, want := range []string{"UDP reflexive addr: 127.0.0.1:", "Other addr: : " + altAddr, "Response origin: : " + altAddr} {
			if !strings.Contains(out, want) {
				t.Errorf("turnutils_stunclient %v did not print %q", args, want)
			}
		}
	}

	// -P pads every request to 1500 bytes (fragmentation tests).
	out := run(natdiscovery, "-m", "-f", "-P", "-p", port, "127.0.0.1")
	t.Logf("turnutils_natdiscovery:\n%s", out)
	for _, want := range []string{"NAT with Endpoint Independent Mapping", "NAT with Endpoint Independent Filtering"} {
		if !strings.Contains(out, want) {
			t.Errorf("turnutils_natdiscovery did not report %q", want)
		}
	}
}
