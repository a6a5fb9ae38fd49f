package punch_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/parleychat/parley/clients/parley/internal/punch"
)

// rawPeer is a hand-driven peer: a plain UDP socket sending STUN checks
// built here with pion/stun, independently of the agent's code.
type rawPeer struct {
	t    *testing.T
	conn *net.UDPConn
}

func newRawPeer(t *testing.T) *rawPeer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawPeer{t: t, conn: c}
}

func (p *rawPeer) addr() netip.AddrPort { return p.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// check sends a Binding request as §20.4 describes it and returns its
// transaction ID.
func (p *rawPeer) check(to netip.AddrPort, user string, key []byte, useCandidate bool) [stun.TransactionIDSize]byte {
	p.t.Helper()
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest, stun.NewUsername(user)}
	if useCandidate {
		setters = append(setters, stun.RawAttribute{Type: stun.AttrUseCandidate})
	}
	setters = append(setters, stun.NewShortTermIntegrity(string(key)), stun.Fingerprint)
	m := stun.MustBuild(setters...)
	if _, err := p.conn.WriteToUDPAddrPort(m.Raw, to); err != nil {
		p.t.Fatal(err)
	}
	return m.TransactionID
}

// answer reads the next STUN message.
func (p *rawPeer) answer() (*stun.Message, netip.AddrPort) {
	p.t.Helper()
	buf := make([]byte, 1500)
	p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			p.t.Fatalf("no answer: %v", err)
		}
		m := &stun.Message{}
		if stun.Decode(buf[:n], m) == nil {
			return m, from
		}
	}
}

// TestCheckAnswers: only checks with the peer's USERNAME and the check
// key are answered, from the session socket, signed, with the address
// they came from; a nomination makes the controlled side use that pair,
// and a later one moves it.
func TestCheckAnswers(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	b := l.newSide("b", nil) // controlled
	peer := newRawPeer(t)
	user := l.sessionID + ":a"

	// Rejected silently: a wrong key, our own side's USERNAME (a
	// reflection), another session's.
	peer.check(b.host, user, randomKey(), false)
	peer.check(b.host, l.sessionID+":b", l.checkKey, false)
	peer.check(b.host, "other:a", l.checkKey, false)
	good := peer.check(b.host, user, l.checkKey, false)
	// The socket is read in order: the first answer must be to the good
	// check, or a bad one was answered.
	m, from := peer.answer()
	if m.TransactionID != good || m.Type != stun.BindingSuccess {
		t.Fatalf("first answer %v, want the success for the good check", m)
	}
	if from != b.host {
		t.Errorf("answered from %v, want the session socket %v", from, b.host)
	}
	if err := stun.NewShortTermIntegrity(string(l.checkKey)).Check(m); err != nil {
		t.Errorf("answer's integrity: %v", err)
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		t.Errorf("answer's fingerprint: %v", err)
	}
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(m); err != nil || xa.Port != int(peer.addr().Port()) || !xa.IP.Equal(net.IP(peer.addr().Addr().AsSlice())) {
		t.Errorf("XOR-MAPPED-ADDRESS %v (%v), want %v", xa, err, peer.addr())
	}
	if st := b.agent.Stats(); st.ChecksAnswered != 1 || st.Direct {
		t.Errorf("stats %+v", st)
	}

	// A nomination: b uses this pair. A peer-reflexive one: it was not
	// introduced.
	peer.check(b.host, user, l.checkKey, true)
	ev := b.waitEvent(t, punch.EventDirect, 5*time.Second)
	if ev.Pair.Remote != peer.addr() || ev.Pair.Kind != punch.PeerReflexive {
		t.Errorf("selected %+v, want the raw peer %v", ev.Pair, peer.addr())
	}
	if err := b.agent.Send([]byte{0x40, 'x'}); err != nil {
		t.Fatal(err)
	}
	// The raw peer gets b's packet (after the STUN answers in between).
	for {
		buf := make([]byte, 100)
		peer.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := peer.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("no packet: %v", err)
		}
		if n == 2 && buf[0] == 0x40 {
			break
		}
	}
	// The peer's QUIC packet now reaches OnPacket.
	peer.conn.WriteToUDPAddrPort([]byte{0x41, 'y'}, b.host)
	select {
	case pkt := <-b.packets:
		if string(pkt) != "\x41y" {
			t.Errorf("got %q", pkt)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the nominated peer's packet was not passed on")
	}

	// A later nomination from elsewhere moves the path.
	peer2 := newRawPeer(t)
	peer2.check(b.host, user, l.checkKey, true)
	ev = b.waitEvent(t, punch.EventDirect, 5*time.Second)
	if ev.Pair.Remote != peer2.addr() {
		t.Errorf("selected %+v, want the second peer %v", ev.Pair, peer2.addr())
	}
}

// TestDemuxDropsOthers: bytes that are neither STUN nor QUIC (RFC 7983's
// other ranges), and QUIC from an address that never passed a check, are
// dropped.
func TestDemuxDropsOthers(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	b := l.newSide("b", nil)
	peer := newRawPeer(t)
	for _, pkt := range [][]byte{
		{0x10, 1, 2, 3},       // ZRTP
		{0x16, 0xfe, 0xfd, 0}, // DTLS
		{0x05},                // nothing
		{0x41, 'q'},           // QUIC, but from a stranger
		{0x00, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, // a truncated STUN header
	} {
		peer.conn.WriteToUDPAddrPort(pkt, b.host)
	}
	// Then a nomination, and QUIC from it, which is passed on: the only
	// packet OnPacket gets is that one.
	peer.check(b.host, l.sessionID+":a", l.checkKey, true)
	b.waitEvent(t, punch.EventDirect, 5*time.Second)
	peer.conn.WriteToUDPAddrPort([]byte{0x42, 'z'}, b.host)
	select {
	case pkt := <-b.packets:
		if string(pkt) != "\x42z" {
			t.Errorf("OnPacket got %q first", pkt)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing passed on")
	}
}
