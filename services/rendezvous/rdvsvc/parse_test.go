package rdvsvc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/protocol/parleyv1"
)

func TestRegisterUsername(t *testing.T) {
	id := newSessionID()
	for _, tc := range []struct {
		in       string
		id, side string
		ok       bool
	}{
		{id + ":a", id, "a", true},
		{id + ":b", id, "b", true},
		{registerUsername(id, "b"), id, "b", true},
		{id + ":c", "", "", false},
		{id + ":", "", "", false},
		{id, "", "", false},
		{id + ":a:", "", "", false},
		{id + ":ab", "", "", false},
		{":a", "", "", false},
		{strings.ToUpper(id) + ":a", "", "", false},
		{"q" + id[1:] + ":a", "", "", false},
		{id[:24] + ":a", "", "", false},
		{id + "0:a", "", "", false},
		{id[:24] + "g:a", "", "", false},
		{"", "", "", false},
	} {
		gotID, gotSide, ok := parseRegisterUsername(tc.in)
		if gotID != tc.id || gotSide != tc.side || ok != tc.ok {
			t.Errorf("parseRegisterUsername(%q) = %q, %q, %v; want %q, %q, %v", tc.in, gotID, gotSide, ok, tc.id, tc.side, tc.ok)
		}
	}
	if a, b := newSessionID(), newSessionID(); a == b || !validSessionID(a) {
		t.Errorf("newSessionID gave %q and %q", a, b)
	}
}

func FuzzRegisterUsername(f *testing.F) {
	for _, s := range []string{"p0123456789abcdef01234567:a", "p0123456789abcdef01234567:b", "alice", ":", "p:a", "p0123456789abcdef01234567:a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, side, ok := parseRegisterUsername(s)
		if !ok {
			if id != "" || side != "" {
				t.Fatalf("refused %q but returned %q %q", s, id, side)
			}
			return
		}
		// Whatever is accepted is exactly what registerUsername makes, and
		// a safe subject token and key part.
		if registerUsername(id, side) != s || !validSessionID(id) || strings.ContainsAny(id, ".*> \t\r\n") {
			t.Fatalf("accepted %q as %q %q", s, id, side)
		}
	})
}

func TestHostCandidates(t *testing.T) {
	hostC := func(addrs ...string) []*parleyv1.P2PCandidate {
		var cs []*parleyv1.P2PCandidate
		for _, a := range addrs {
			cs = append(cs, &parleyv1.P2PCandidate{Kind: hostKind, Addr: a})
		}
		return cs
	}
	nine := make([]string, 9)
	for i := range nine {
		nine[i] = netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(1+i)).String()
	}
	for _, tc := range []struct {
		name string
		in   []*parleyv1.P2PCandidate
		want []string // nil: refused
		err  error
	}{
		{"none", nil, []string{}, nil},
		{"v4 and v6", hostC("192.168.1.20:50412", "[fd00::1]:4000"), []string{"192.168.1.20:50412", "[fd00::1]:4000"}, nil},
		{"loopback", hostC("127.0.0.1:9"), []string{"127.0.0.1:9"}, nil},
		{"v4-mapped v6 made v4", hostC("[::ffff:10.1.2.3]:80"), []string{"10.1.2.3:80"}, nil},
		{"a repeat kept once", hostC("10.0.0.1:1", "10.0.0.1:1"), []string{"10.0.0.1:1"}, nil},
		{"unset kind taken as host", []*parleyv1.P2PCandidate{{Addr: "10.0.0.1:1"}}, []string{"10.0.0.1:1"}, nil},
		{"eight", hostC(nine[:8]...), nine[:8], nil},
		{"nine", hostC(nine...), nil, errTooMany},
		{"server-reflexive", []*parleyv1.P2PCandidate{{Kind: srflxKind, Addr: "10.0.0.1:1"}}, nil, errCandidate},
		{"unknown kind", []*parleyv1.P2PCandidate{{Kind: 7, Addr: "10.0.0.1:1"}}, nil, errCandidate},
		{"a name", hostC("laptop.local:4000"), nil, errCandidate},
		{"no port", hostC("10.0.0.1"), nil, errCandidate},
		{"port 0", hostC("10.0.0.1:0"), nil, errCandidate},
		{"port too big", hostC("10.0.0.1:65536"), nil, errCandidate},
		{"v6 without brackets", hostC("fd00::1:4000"), nil, errCandidate},
		{"a zone", hostC("[fe80::1%eth0]:4000"), nil, errCandidate},
		{"unspecified", hostC("0.0.0.0:4000"), nil, errCandidate},
		{"v6 unspecified", hostC("[::]:4000"), nil, errCandidate},
		{"multicast", hostC("224.0.0.1:4000"), nil, errCandidate},
		{"broadcast", hostC("255.255.255.255:4000"), nil, errCandidate},
		{"empty", hostC(""), nil, errCandidate},
		{"space", hostC(" 10.0.0.1:1"), nil, errCandidate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hostCandidates(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("hostCandidates = %v, %v; want %v", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			addrs := []string{}
			for _, c := range got {
				if c.Kind != hostKind {
					t.Errorf("kind %s", c.Kind)
				}
				addrs = append(addrs, c.Addr)
			}
			if !slices.Equal(addrs, tc.want) {
				t.Errorf("hostCandidates = %v, want %v", addrs, tc.want)
			}
		})
	}
}

func FuzzCandidate(f *testing.F) {
	for _, s := range []string{"192.168.1.20:50412", "[fd00::1]:4000", "[::ffff:1.2.3.4]:5", "[fe80::1%eth0]:1", "0.0.0.0:1", "a:1", "1.2.3.4:0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cs, err := hostCandidates([]*parleyv1.P2PCandidate{{Kind: hostKind, Addr: s}})
		if err != nil {
			return
		}
		// What is accepted is canonical (parsing it again gives it back),
		// a unicast address with a port, and a valid candidate itself.
		ap, perr := netip.ParseAddrPort(cs[0].Addr)
		if perr != nil || ap.String() != cs[0].Addr || ap.Port() == 0 || ap.Addr().Is4In6() || ap.Addr().Zone() != "" ||
			ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() {
			t.Fatalf("%q accepted as %q", s, cs[0].Addr)
		}
		again, err := hostCandidates(cs)
		if err != nil || again[0].Addr != cs[0].Addr {
			t.Fatalf("canonical %q refused or changed: %v %v", cs[0].Addr, again, err)
		}
	})
}

func TestMapping(t *testing.T) {
	for _, tc := range []struct {
		srflx, alt string
		want       parleyv1.NatMapping
	}{
		{"", "", mapUnknown},
		{"1.2.3.4:5", "", mapUnknown},
		{"", "1.2.3.4:5", mapUnknown},
		{"1.2.3.4:5", "1.2.3.4:5", mapIndependent},
		{"1.2.3.4:5", "1.2.3.4:6", mapDependent},
		{"1.2.3.4:5", "1.2.3.7:5", mapDependent},
	} {
		if got := mappingOf(&internalv1.P2PSide{Srflx: tc.srflx, SrflxAlt: tc.alt}); got != tc.want {
			t.Errorf("mapping of %q/%q = %s, want %s", tc.srflx, tc.alt, got, tc.want)
		}
	}
}

func TestStartDelay(t *testing.T) {
	for _, tc := range []struct{ own, peer, want uint32 }{
		{30, 130, 50}, {130, 30, 0}, {40, 40, 0}, {0, 1, 0}, {0, 3, 1}, {0, maxRTT, maxRTT / 2},
	} {
		if got := startDelay(tc.own, tc.peer); got != tc.want {
			t.Errorf("startDelay(%d, %d) = %d, want %d", tc.own, tc.peer, got, tc.want)
		}
	}
}

func TestCandidatesOf(t *testing.T) {
	h := []*parleyv1.P2PCandidate{{Kind: hostKind, Addr: "10.0.0.2:4000"}, {Kind: hostKind, Addr: "1.2.3.4:4000"}}
	for _, tc := range []struct {
		name       string
		srflx, alt string
		want       []string
	}{
		{"not registered", "", "", []string{"10.0.0.2:4000", "1.2.3.4:4000"}},
		{"independent", "5.6.7.8:9", "5.6.7.8:9", []string{"10.0.0.2:4000", "1.2.3.4:4000", "5.6.7.8:9"}},
		{"dependent", "5.6.7.8:9", "5.6.7.8:10", []string{"10.0.0.2:4000", "1.2.3.4:4000", "5.6.7.8:9", "5.6.7.8:10"}},
		{"no NAT: seen at a host address", "1.2.3.4:4000", "1.2.3.4:4000", []string{"10.0.0.2:4000", "1.2.3.4:4000"}},
	} {
		var got []string
		for _, c := range candidatesOf(&internalv1.P2PSide{Host: h, Srflx: tc.srflx, SrflxAlt: tc.alt}) {
			got = append(got, c.Addr)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseAttributes(t *testing.T) {
	for _, tc := range []struct {
		v            []byte
		ip, port, ok bool
	}{
		{[]byte{0, 0, 0, 0}, false, false, true},
		{[]byte{0, 0, 0, 4}, true, false, true},
		{[]byte{0, 0, 0, 2}, false, true, true},
		{[]byte{0, 0, 0, 6}, true, true, true},
		{[]byte{0xff, 0xff, 0xff, 0xf9}, false, false, true}, // other bits ignored
		{[]byte{0, 4}, false, false, false},
		{nil, false, false, false},
		{[]byte{0, 0, 0, 0, 0}, false, false, false},
	} {
		ip, port, ok := parseChangeRequest(tc.v)
		if ip != tc.ip || port != tc.port || ok != tc.ok {
			t.Errorf("parseChangeRequest(%x) = %v %v %v, want %v %v %v", tc.v, ip, port, ok, tc.ip, tc.port, tc.ok)
		}
	}
	for _, tc := range []struct {
		v    []byte
		port uint16
		ok   bool
	}{
		{[]byte{0x12, 0x34, 0, 0}, 0x1234, true},
		{[]byte{0x12, 0x34, 0xff, 0xff}, 0x1234, true},
		{[]byte{0, 0, 0, 0}, 0, false},
		{[]byte{0x12, 0x34}, 0, false},
		{nil, 0, false},
	} {
		port, ok := parseResponsePort(tc.v)
		if ok != tc.ok || ok && port != tc.port {
			t.Errorf("parseResponsePort(%x) = %d %v, want %d %v", tc.v, port, ok, tc.port, tc.ok)
		}
	}
}

// fuzzServer is a STUN server on loopback sockets (both addresses), not
// running: FuzzPacket hands it datagrams directly. Registrations queue
// (no workers) and are dropped once the queue is full.
func fuzzServer(t testing.TB) *stunServer {
	t.Helper()
	return testSTUNServer(t, func(c *Config) { c.STUNRate = 0 })
}

// testSTUNServer is a STUN server on 127.0.0.1 and 127.0.0.2 (any ports)
// with the default config changed by mutate, not serving: tests call
// packet themselves.
func testSTUNServer(t testing.TB, mutate func(*Config)) *stunServer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.STUNAddr, cfg.STUNAltAddr = "127.0.0.1:0", "127.0.0.2:0"
	mutate(&cfg)
	addrs, err := cfg.addrs()
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{cfg: cfg, log: slog.New(slog.DiscardHandler), now: time.Now, metrics: m}
	st := newSTUNServer(s, addrs)
	if err := st.listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, k := range st.socks {
			_ = k.conn.Close()
		}
	})
	return st
}

// TestSTUNRateLimitPerSource: the STUN rate limit counts an IPv4 address,
// or an IPv6 /64, as one source. Requests from many addresses of one /64
// (a host hopping through its own, or spoofed ones inside a victim's
// network) share one burst; another /64, or an IPv4 address, has its own.
func TestSTUNRateLimitPerSource(t *testing.T) {
	st := testSTUNServer(t, func(c *Config) { c.STUNRate, c.STUNBurst = 1, 10 })
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest)
	if err != nil {
		t.Fatal(err)
	}
	req, res := new(stun.Message), new(stun.Message)
	answered := func() int { return int(testutil.ToFloat64(st.s.metrics.bindings)) }
	send := func(from netip.AddrPort) { st.packet(st.socks[0], bytes.Clone(m.Raw), from, req, res) }
	for i := range 100 {
		send(netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 15: byte(i), 14: byte(i >> 8)}), 5000))
	}
	if got := answered(); got != 10 {
		t.Fatalf("100 requests from 100 addresses of one /64 got %d answers, want the burst of 10", got)
	}
	send(netip.MustParseAddrPort("[2001:db8:1:3::1]:5000"))
	send(netip.MustParseAddrPort("[::ffff:192.0.2.1]:5000"))
	send(netip.MustParseAddrPort("192.0.2.2:5000"))
	if got := answered(); got != 13 {
		t.Fatalf("another /64 and two IPv4 addresses: %d answers in all, want 13", got)
	}
	for range 20 {
		send(netip.MustParseAddrPort("192.0.2.1:6000")) // the same as ::ffff:192.0.2.1
	}
	if got := answered(); got != 22 {
		t.Fatalf("192.0.2.1 (also written IPv4-mapped) got %d answers in all, want its burst of 10", got-12)
	}
}

// TestRegistrationVouchedBeforeTheStore: the read loop checks a
// registration against the live sessions' keys the watch keeps before it
// costs a worker and a store read. A forged one for a known session is
// answered 401 at once; a genuine one goes on; one for a session the copy
// does not know (made up, or opened a moment ago) goes on only within the
// miss budget, then is dropped as busy; a side that may not register yet
// (b before it accepted) is asked of the store, never refused here.
func TestRegistrationVouchedBeforeTheStore(t *testing.T) {
	st := testSTUNServer(t, func(c *Config) { c.STUNRate = 0 })
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	to := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	id := newSessionID()
	aKey, bKey := newKey(), newKey()
	rec := &internalv1.P2PRecord{SessionId: id, State: offered,
		A: &internalv1.P2PSide{UserId: "ua", Device: &parleyv1.DeviceKey{DeviceId: "0123456789abcdef"}, RegisterKey: aKey},
		B: &internalv1.P2PSide{UserId: "ub", RegisterKey: bKey}}
	st.s.regKeys.reset()
	st.s.regKeys.put(id, rec)
	st.s.regKeys.synced()
	reg := func(user string, key []byte) *stun.Message {
		m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername(user), stun.MessageIntegrity(key), stun.Fingerprint)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	buf := make([]byte, 1500)
	answered401 := func() bool {
		n := readNow(t, sink, buf)
		var res stun.Message
		if n < 0 || stun.Decode(buf[:n], &res) != nil {
			return false
		}
		var ec stun.ErrorCodeAttribute
		return ec.GetFrom(&res) == nil && ec.Code == stun.CodeUnauthorized
	}
	res := new(stun.Message)
	for i := range 1000 {
		if st.vouch(reg(id+":a", bKey), res, st.socks[0], to) || !answered401() {
			t.Fatalf("forged registration %d went on, or got no 401", i)
		}
	}
	if !st.vouch(reg(id+":a", aKey), res, st.socks[0], to) {
		t.Fatal("a genuine registration was stopped")
	}
	if !st.vouch(reg(id+":b", bKey), res, st.socks[0], to) || answered401() {
		t.Fatal("b, before it accepted, was refused in the read loop: only the store may say")
	}
	if st.vouch(reg("x", aKey), res, st.socks[0], to) || !answered401() {
		t.Fatal("a USERNAME that names no session was not answered 401")
	}
	// With a nonce key (every record made now has one), a genuine
	// registration without its address's NONCE is answered 438 here, and
	// one with it goes on.
	rec.NonceKey = newKey()
	st.s.regKeys.put(id, rec)
	if st.vouch(reg(id+":a", aKey), res, st.socks[0], to) {
		t.Fatal("a registration without its NONCE went on to the store")
	}
	n := readNow(t, sink, buf)
	var stale stun.Message
	var ec stun.ErrorCodeAttribute
	var nonce stun.Nonce
	if n < 0 || stun.Decode(buf[:n], &stale) != nil || ec.GetFrom(&stale) != nil || ec.Code != stun.CodeStaleNonce ||
		nonce.GetFrom(&stale) != nil || stun.MessageIntegrity(aKey).Check(&stale) != nil {
		t.Fatal("no signed 438 with a NONCE for a registration without one")
	}
	withNonce, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername(id+":a"), nonce, stun.MessageIntegrity(aKey), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if !st.vouch(withNonce, res, st.socks[0], to) {
		t.Fatal("a registration with its NONCE was stopped")
	}
	went := 0
	for range 1000 {
		if st.vouch(reg(newSessionID()+":a", aKey), res, st.socks[0], to) {
			went++
		}
	}
	if went < missBurst-1 || went > missBurst+10 {
		t.Fatalf("%d of 1000 registrations for unknown sessions went on to the store, want about the miss burst of %d", went, missBurst)
	}
	if got := testutil.ToFloat64(st.s.metrics.dropBusy); got < 1000-missBurst-10 {
		t.Fatalf("%v dropped as busy", got)
	}
}

// FuzzPacket feeds the STUN server any datagram: it must not panic, must
// answer only well-formed Binding requests, and every answer must be a
// STUN response to that request with a valid FINGERPRINT, sent to the
// sender (or its RESPONSE-PORT) and never larger than a request could make
// it.
func FuzzPacket(f *testing.F) {
	build := func(setters ...stun.Setter) []byte {
		m, err := stun.Build(append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, setters...)...)
		if err != nil {
			f.Fatal(err)
		}
		return m.Raw
	}
	change := func(v uint32) stun.RawAttribute {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], v)
		return stun.RawAttribute{Type: stun.AttrChangeRequest, Value: b[:]}
	}
	raw := func(a stun.RawAttribute) stun.Setter { return rawSetter(a) }
	f.Add(build())
	f.Add(build(stun.Fingerprint))
	f.Add(build(raw(change(6)), stun.Fingerprint))
	f.Add(build(raw(change(2))))
	f.Add(build(stun.NewUsername("p0123456789abcdef01234567:a"), stun.NewShortTermIntegrity("k"), stun.Fingerprint))
	f.Add(build(stun.NewUsername("x")))
	f.Add(build(raw(stun.RawAttribute{Type: stun.AttrResponsePort, Value: []byte{0, 9, 0, 0}}), raw(stun.RawAttribute{Type: stun.AttrPadding, Value: make([]byte, 64)})))
	f.Add(build(raw(stun.RawAttribute{Type: 0x001e, Value: []byte{1}})))
	f.Add([]byte("not stun at all"))
	st := fuzzServer(f)
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = sink.Close() })
	from := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	req, res := new(stun.Message), new(stun.Message)
	buf := make([]byte, 2*maxPacket)
	// The checks below see the answers: a Binding is answered at once.
	st.packet(st.socks[0], build(), from, req, res)
	if readNow(f, sink, buf) < 20 {
		f.Fatal("a Binding request was not answered at once")
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, k := range st.socks {
			st.packet(k, bytes.Clone(pkt), from, req, res)
			// Loopback delivers within the send: whatever was sent is
			// queued, so a read that would block means nothing was.
			n := readNow(t, sink, buf)
			if n < 0 {
				continue
			}
			if !wellFormed(pkt) {
				t.Fatalf("answered a malformed datagram %x", pkt)
			}
			var in, out stun.Message
			if err := stun.Decode(pkt, &in); err != nil || in.Type != stun.BindingRequest {
				t.Fatalf("answered %x, not a Binding request", pkt)
			}
			if err := stun.Decode(buf[:n], &out); err != nil {
				t.Fatalf("undecodable answer %x: %v", buf[:n], err)
			}
			if out.TransactionID != in.TransactionID || out.Type.Method != stun.MethodBinding ||
				(out.Type.Class != stun.ClassSuccessResponse && out.Type.Class != stun.ClassErrorResponse) {
				t.Fatalf("answer %s to %s", out.Type, in.Type)
			}
			if in.Contains(stun.AttrFingerprint) {
				if err := stun.Fingerprint.Check(&out); err != nil {
					t.Fatalf("answer's FINGERPRINT: %v", err)
				}
			} else if out.Contains(stun.AttrFingerprint) {
				t.Fatalf("FINGERPRINT in the answer to a request without one")
			}
			if n > 3*len(pkt) {
				t.Fatalf("a %d-byte request answered with %d bytes: over 3x", len(pkt), n)
			}
		}
		for len(st.jobs) > 0 {
			<-st.jobs
		}
	})
}

// readNow reads a datagram queued on c without waiting: -1 when there is
// none.
func readNow(t testing.TB, c *net.UDPConn, buf []byte) int {
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	n := -1
	if err := rc.Read(func(fd uintptr) bool {
		m, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
		if err == nil {
			n = m
		}
		return true // never wait
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// rawSetter adds an attribute as given.
type rawSetter stun.RawAttribute

func (a rawSetter) AddTo(m *stun.Message) error {
	m.Add(a.Type, a.Value)
	return nil
}
