package callmedia

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/parleychat/parley/libs/mediabus"
	"github.com/parleychat/parley/protocol/media"
)

// mediaFramePrefix bounds appendMediaFrameHeader's bytes: the 4-byte
// length prefix (protocol/wire), Frame's field 69 key (2 bytes) and
// length (2), MediaPacket's field 1 key (1) and length (2).
const mediaFramePrefix = 11

// appendMediaFrameHeader appends the start of a length-prefixed
// Frame{media: MediaPacket{packet}} (request_id 0) whose packet is n bytes:
// the caller appends the packet itself. It is protobuf's encoding
// (field 69, wire type 2, then field 1, wire type 2), written by hand so the
// down path allocates nothing per listener; TestMediaFrame checks it
// decodes as the schema says.
func appendMediaFrameHeader(dst []byte, n int) []byte {
	inner := 1 + varintLen(n) + n
	frame := 2 + varintLen(inner) + inner
	dst = binary.BigEndian.AppendUint32(dst, uint32(frame))
	dst = append(dst, (69<<3|2)&0x7f|0x80, (69<<3|2)>>7) // key of Frame.media, a 2-byte varint
	dst = binary.AppendUvarint(dst, uint64(inner))
	dst = append(dst, 1<<3|2) // key of MediaPacket.packet
	return binary.AppendUvarint(dst, uint64(n))
}

func varintLen(n int) int {
	if n < 1<<7 {
		return 1
	}
	return 2 // n <= media.MaxPacket+3 < 1<<14
}

// receiveUDP handles one datagram from src (the read loop's).
func (p *Plane) receiveUDP(pkt []byte, src netip.AddrPort, b *buffers) {
	p.inUDP.Inc()
	p.receive(pkt, src, nil, b)
}

// Packet handles a sealed packet that came from conn as a media frame
// (Frame.media): as a UDP packet, with conn as the return path. Nothing is
// ever sent back for a bad one. pkt is not kept.
func (p *Plane) Packet(conn Conn, pkt []byte) {
	p.inFrame.Inc()
	b := p.frameBufs.Get().(*buffers)
	p.receive(pkt, netip.AddrPort{}, conn, b)
	p.frameBufs.Put(b)
}

// receive is the up path (see the package comment). via is the
// connection the packet came on, nil for UDP (from src).
func (p *Plane) receive(pkt []byte, src netip.AddrPort, via Conn, b *buffers) {
	h, err := media.ParseHeader(pkt)
	if err != nil {
		p.drop(dropMalformed)
		return
	}
	if h.Type == media.TypeProbeReply { // only the server sends those
		p.drop(dropType)
		return
	}
	var s *stream
	var payload []byte
	p.mu.RLock()
	cands := p.byID[h.StreamID]
	for _, c := range cands {
		if _, pl, err := c.key.Open(b.open[:0], media.Up, pkt); err == nil {
			s, payload = c, pl
			break
		}
	}
	p.mu.RUnlock()
	switch {
	case len(cands) == 0:
		p.drop(dropUnknown)
		return
	case s == nil:
		p.drop(dropAuth)
		return
	case via != nil && via != s.conn:
		p.drop(dropWrongConn)
		return
	case h.Type == media.TypeProbe && len(payload) != 0 && len(payload) != media.PathTokenLen:
		p.drop(dropType)
		return
	}

	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		p.drop(dropUnknown)
		return
	}
	if !s.replay.Accept(h.Seq) {
		s.mu.Unlock()
		p.drop(dropReplay)
		return
	}
	now := time.Now()
	if !s.allow(now) {
		s.mu.Unlock()
		p.drop(dropRate)
		return
	}
	s.heard = now
	var (
		token     [media.PathTokenLen]byte // the path token to send src
		challenge bool
	)
	if via != nil {
		s.framed = true
	} else {
		if src != s.addr {
			token, challenge = s.pathLocked(src, h.Type, payload, now)
			if s.addr == src {
				p.proven.Inc()
				p.debug("media stream moved", "call", s.call.id, "stream", s.id, "to", src)
			}
		}
		// Media goes by UDP again only to a proven address: a client
		// back from frames on a new one gets frames until it is proven.
		if src == s.addr {
			s.framed = false
		}
	}
	s.mu.Unlock()

	if h.Type == media.TypeAudio {
		msg := mediabus.AppendAudio(b.out[:0], h, payload)
		if err := p.nc.Publish(s.call.up, msg); err != nil {
			p.drop(dropPublish)
		}
	}
	// A probe is answered by the way it came; from an unproven address the
	// answer carries the path token. Audio and keepalives from one are
	// answered with the token alone, at most every challengeEvery.
	if h.Type != media.TypeProbe && !challenge {
		return
	}
	reply := media.Header{Type: media.TypeProbeReply, StreamID: h.StreamID, Seq: h.Seq, Timestamp: h.Timestamp}
	if via != nil {
		out := appendMediaFrameHeader(b.out[:0], media.Overhead)
		out, _ = s.key.Seal(out, media.Down, reply, nil)
		p.pushFrame(via, out)
		return
	}
	var pl []byte
	if challenge {
		pl = token[:]
		p.challenged.Inc()
	}
	out, _ := s.key.Seal(b.out[:0], media.Down, reply, pl)
	p.sendUDP(out, src)
}

// challengeEvery bounds the path challenges sent for a stream's audio and
// keepalives from addresses it has not proven, whichever (probes are
// answered one for one): one 40-byte answer per 100 ms at most, whatever
// comes and from however many sources.
const challengeEvery = 100 * time.Millisecond

// pathLocked handles an authenticated packet of s, of type typ, that came
// by UDP from src, which is not s's proven address (docs/protocol.md
// §19.3, like QUIC's path validation, RFC 9000 §8.2). A probe that echoes
// the path token sent to src proves src receives: it becomes s's address,
// and send is false. Otherwise src becomes the candidate (with a
// fresh token when it was not already) and the token to send it is
// returned: always for a probe (its reply carries it), for other packets
// at most every challengeEvery (send false otherwise). Media keeps going to the
// proven address, or as frames, meanwhile: a participant who can seal
// packets but spoofs their source address cannot aim the call's audio at
// anyone else. s.mu is held.
func (s *stream) pathLocked(src netip.AddrPort, typ media.Type, payload []byte, now time.Time) (token [media.PathTokenLen]byte, send bool) {
	if s.cand == src && typ == media.TypeProbe && len(payload) == media.PathTokenLen &&
		subtle.ConstantTimeCompare(payload, s.token[:]) == 1 {
		s.addr, s.cand = src, netip.AddrPort{}
		return token, false
	}
	if s.cand != src {
		s.cand = src
		_, _ = rand.Read(s.token[:]) // crypto/rand never fails (Go 1.24+)
	}
	if typ != media.TypeProbe {
		if now.Sub(s.challenged) < challengeEvery {
			return token, false
		}
		s.challenged = now
	}
	return s.token, true
}

// down handles one message on subject.MediaDown(c.id), on the
// subscription's goroutine.
func (p *Plane) down(c *call, data []byte) {
	switch mediabus.KindOf(data) {
	case mediabus.KindAudio:
		a, err := mediabus.ParseAudio(data)
		if err != nil || a.Header.Type != media.TypeAudio {
			p.drop(dropBus)
			return
		}
		p.forward(c, a)
	case mediabus.KindRoster, mediabus.KindRosterUnordered:
		r, err := mediabus.ParseRoster(data, c.ids[:0])
		c.ids = r.Streams[:0]
		if err != nil {
			p.drop(dropBus)
			return
		}
		p.roster(c, r)
	default: // Alive travels up only
		p.drop(dropBus)
	}
}

// forward re-seals a speaker's audio for each local listener of c.
func (p *Plane) forward(c *call, a mediabus.Audio) {
	p.mu.RLock()
	targets := c.targets[:0]
	for _, s := range c.streams {
		if s.id != a.Header.StreamID {
			targets = append(targets, s)
		}
	}
	p.mu.RUnlock()
	for _, s := range targets {
		s.mu.Lock()
		addr, framed, gone := s.addr, s.framed, s.gone
		s.mu.Unlock()
		switch {
		case gone:
		case framed || !addr.IsValid():
			// Frames: its last packet came that way, or none came by UDP
			// yet (a client still probing, or one whose UDP is blocked
			// and that sends nothing: muted, or listening only). The
			// connection is always there.
			out := appendMediaFrameHeader(c.buf[:0], len(a.Payload)+media.Overhead)
			out, err := s.key.Seal(out, media.Down, a.Header, a.Payload)
			if err != nil {
				p.drop(dropBus)
				continue
			}
			p.pushFrame(s.conn, out)
		case addr.IsValid():
			out, err := s.key.Seal(c.buf[:0], media.Down, a.Header, a.Payload)
			if err != nil {
				p.drop(dropBus)
				continue
			}
			p.sendUDP(out, addr)
		}
	}
	clear(targets)
	c.targets = targets[:0]
}

// roster drops c's local streams that r does not list, except those
// installed within RosterGrace that no roster has listed yet (the roster
// may predate their join); an empty r, the call's end, drops them all.
// A stream a roster listed and a newer one leaves out is dropped at once:
// its participant left, or moved the call to another device (§19.1), and
// the record the newer roster was taken from had seen its join. A roster
// older than one taken before is ignored. Rev 0, from a relay that sends
// none, is always taken, in the order it comes: while relays are upgraded
// an old replica may take over a call a new one owned, and its rosters,
// the one that ends the call among them, must still count.
func (p *Plane) roster(c *call, r mediabus.Roster) {
	ids := r.Streams
	recent := time.Now().Add(-time.Duration(p.grace.Load()))
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.Rev != 0 && r.Rev < c.rev {
		p.debug("media roster older than one taken: ignored", "call", c.id, "rev", r.Rev, "taken", c.rev)
		return
	}
	c.rev = max(c.rev, r.Rev)
	c.roster = append(c.roster[:0], ids...)
	for i := 0; i < len(c.streams); {
		s := c.streams[i]
		listed := false
		for _, id := range ids {
			if id == s.id {
				listed = true
				break
			}
		}
		if listed {
			s.listed = true
		}
		if listed || len(ids) > 0 && !s.listed && s.installed.After(recent) {
			i++
			continue
		}
		p.debug("media stream dropped by the roster", "call", c.id, "stream", s.id)
		p.dropLocked(s) // swaps the last stream into i
	}
}

// pushFrame queues a media frame on conn, dropping it if there is no room.
func (p *Plane) pushFrame(conn Conn, frame []byte) {
	if conn.PushMedia(frame) {
		p.outFrame.Inc()
	} else {
		p.drop(dropQueueFull)
	}
}

// sendUDP sends pkt to addr from the media port.
func (p *Plane) sendUDP(pkt []byte, addr netip.AddrPort) {
	if p.pc == nil {
		p.drop(dropNoPath)
		return
	}
	if _, err := p.pc.WriteToUDPAddrPort(pkt, addr); err != nil {
		p.drop(dropSend)
		return
	}
	p.outUDP.Inc()
}

// readLoop reads the media port until it is closed (Run).
func (p *Plane) readLoop() {
	b := newBuffers()
	// One byte more than the largest packet, so an oversized datagram is
	// seen as such rather than cut to a valid-looking length.
	buf := make([]byte, media.MaxPacket+1)
	for {
		n, src, err := p.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ICMP errors surface as read errors on some systems: the
			// socket itself still works.
			p.debug("media udp read", "err", err)
			continue
		}
		p.receiveUDP(buf[:n], src, b)
	}
}

// A participant sends 50 audio packets a second at most (one per 20 ms
// frame), plus a few probes and keepalives. More is a client flooding the
// call: every packet it sends is forwarded to, and re-sealed for, every
// listener, so one participant could take the call's (and the gateway's)
// capacity from the others. Each stream may send streamRate packets a
// second, in bursts of streamBurst (a client catching up after a stall);
// the rest is dropped here, before the bus.
const (
	streamRate  = 100
	streamBurst = 50
)

// allow takes a token of s's bucket at now; s.mu held.
func (s *stream) allow(now time.Time) bool {
	if s.refill.IsZero() {
		s.tokens, s.refill = streamBurst, now
	}
	s.tokens = min(streamBurst, s.tokens+now.Sub(s.refill).Seconds()*streamRate)
	s.refill = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}
