package parley

import (
	"time"

	"github.com/parleychat/parley/clients/parley/internal/p2pchan"
	"github.com/parleychat/parley/protocol/media"
)

// Calls over a direct session (docs/protocol.md §20.7). During a private
// call whose two devices also hold a direct session, the audio goes
// straight to the peer as QUIC datagrams instead of through the gateway's
// media relay:
//
//   - each side tells the peer DirectCall{call, direct: true} on every
//     session with the other user that can carry audio now (its channel is
//     connected and its path is direct, §20.4), and sends its frames there
//     once the peer said the same of the same call: that shows the peer's
//     device is the one in the call, and listens;
//   - when that stops being so (the session closed, its direct pair died,
//     the peer went back), the next frame goes through the media relay, and
//     the peer is told DirectCall{direct: false} if the channel still works;
//   - the peer's datagrams are played like its relayed packets: the sender
//     numbers them with its stream's sequence numbers, so one replay
//     window and jitter buffer carry the speaker across a switch.
//
// The gateway keeps hearing probes and keepalives on the call's stream
// meanwhile, so the call keeps its participant. Group calls never go
// direct.

// CallPath is where a call's audio goes.
type CallPath int

const (
	// CallRelayed: through the gateway's media relay (§19).
	CallRelayed CallPath = iota
	// CallDirect: over a direct session with the other user (§20.7).
	CallDirect
)

func (p CallPath) String() string {
	if p == CallDirect {
		return "direct"
	}
	return "relayed"
}

// CallPathEvent: a call's audio moved between the media relay and a
// direct session (CallSession.Stats().Path says the same).
type CallPathEvent struct {
	Session *CallSession
	Path    CallPath
}

func (CallPathEvent) isEvent() {}

// directAudioQueue bounds the frames waiting for a direct session's
// sender: 320 ms. A session that cannot take more (its path is stalling)
// sends the next frames through the media relay.
const directAudioQueue = 16

// privatePeer is the other participant of a private call (user and
// stream), once they are in it; "" for a group call, an ended call or
// before the answer.
func privatePeer(call Call, me string) (string, uint32) {
	if call.Kind != ConversationDirect || call.State == CallEnded || me == "" {
		return "", 0
	}
	for _, p := range call.Participants {
		if p.UserID != me {
			return p.UserID, p.StreamID
		}
	}
	return "", 0
}

// steerDirect decides, before each frame, where the audio goes: tells the
// direct sessions with the call's peer whether this side carries the call
// on them, and picks the one to send on. Called by the media loop only.
func (s *CallSession) steerDirect() {
	s.mu.Lock()
	call, me, over, via := s.call, s.me, s.over, s.via
	s.mu.Unlock()
	peer, _ := privatePeer(call, me)
	if peer == "" && len(s.told) == 0 && via == nil {
		return // a group call, or no peer yet: nothing to do
	}
	usable := make(map[*DirectSession]*p2pchan.Channel)
	if peer != "" && !over {
		for _, ds := range s.c.directWith(peer) {
			if ch := ds.callChannel(); ch != nil {
				usable[ds] = ch
			}
		}
	}
	for ds := range s.told {
		if usable[ds] == nil {
			ds.tellCall(call.ID, false)
			delete(s.told, ds)
		}
	}
	for ds, ch := range usable {
		if !s.told[ds] {
			if err := ch.SendCall(call.ID, true); err == nil {
				s.told[ds] = true
			}
		}
	}
	next := via
	if next == nil || !s.told[next] || !next.peerCarries(call.ID) {
		next = nil
		for ds := range s.told {
			if ds.peerCarries(call.ID) {
				next = ds
				break
			}
		}
	}
	if next == via {
		return
	}
	s.mu.Lock()
	if s.over {
		s.mu.Unlock()
		return
	}
	s.via = next
	s.notifyLocked()
	s.mu.Unlock()
	if (next == nil) == (via == nil) {
		return // from one direct session to another
	}
	path := CallRelayed
	if next != nil {
		path = CallDirect
		s.c.log.Info("parley: call audio goes direct", "call", call.ID, "direct", next.id)
	} else {
		s.c.log.Info("parley: call audio goes through the media relay", "call", call.ID)
	}
	s.c.events.push(CallPathEvent{Session: s, Path: path})
}

// endDirect tells the direct sessions the call no longer goes over them,
// when the session ends (the media loop has returned).
func (s *CallSession) endDirect() {
	id := s.callID()
	for ds := range s.told {
		ds.tellCall(id, false)
		delete(s.told, ds)
	}
	s.mu.Lock()
	s.via = nil
	s.mu.Unlock()
}

// receiveDirect takes an audio frame of call callID that came over a
// direct session with user peerID in. It reports whether this session
// is that call's.
func (s *CallSession) receiveDirect(callID, peerID string, a p2pchan.Audio) bool {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.over || s.call.ID != callID {
		return false
	}
	peer, stream := privatePeer(s.call, s.me)
	if peer != peerID || stream == 0 {
		s.stats.Dropped++ // not (or no longer) this call's peer
		return true
	}
	if s.takeAudioLocked(stream, a.Seq, a.Timestamp, media.Flags(a.Flags), a.Opus, now) {
		s.stats.DirectReceived++
	}
	return true
}

// directWith returns this client's direct sessions with user peerID.
func (c *Client) directWith(peerID string) []*DirectSession {
	d := c.p2pState.Load()
	if d == nil {
		return nil // never used direct sessions
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*DirectSession
	for _, s := range d.sessions {
		if s.peerID == peerID {
			out = append(out, s)
		}
	}
	return out
}

// callChannel returns the session's channel if it can carry a call's
// audio now: connected, on a direct path. Through the session relay the
// audio would cross the server anyway, on the connection, behind
// everything else on it: the media relay does that better.
func (s *DirectSession) callChannel() *p2pchan.Channel {
	s.mu.Lock()
	ch, ok := s.ch, !s.closed && s.path == DirectDirect
	s.mu.Unlock()
	if !ok || ch == nil || !ch.Connected() {
		return nil
	}
	return ch
}

// tellCall sends DirectCall{callID, direct} if the channel still lives.
func (s *DirectSession) tellCall(callID string, direct bool) {
	s.mu.Lock()
	ch, closed := s.ch, s.closed
	s.mu.Unlock()
	if ch == nil || closed {
		return
	}
	if err := ch.SendCall(callID, direct); err != nil {
		s.c.log.Debug("parley: telling the peer where the call's audio goes", "direct", s.id, "err", err)
	}
}

// peerCarries reports whether the peer's last DirectCall said it carries
// call callID on this session.
func (s *DirectSession) peerCarries(callID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peerCall == callID && s.peerCallDirect
}

// gotCall records the peer's DirectCall.
func (s *DirectSession) gotCall(c p2pchan.Call) {
	s.mu.Lock()
	s.peerCall, s.peerCallDirect = c.ID, c.Direct
	s.mu.Unlock()
	s.c.log.Debug("parley: the peer's call audio", "direct", s.id, "call", c.ID, "on_session", c.Direct)
}

// gotAudio hands an audio datagram to the call the peer named in its
// DirectCall; without one it is dropped.
func (s *DirectSession) gotAudio(a p2pchan.Audio) {
	s.mu.Lock()
	callID := s.peerCall
	s.mu.Unlock()
	if callID == "" {
		return
	}
	for _, cs := range s.c.callSessions() {
		if cs.receiveDirect(callID, s.peerID, a) {
			return
		}
	}
}

// queueAudio hands a frame to the session's audio sender without waiting;
// false if the session is closed or the sender is backed up (QUIC's
// datagram queue blocks while the path stalls).
func (s *DirectSession) queueAudio(a p2pchan.Audio) bool {
	s.mu.Lock()
	if s.closed || s.ch == nil {
		s.mu.Unlock()
		return false
	}
	if s.audioQ == nil {
		s.audioQ = make(chan p2pchan.Audio, directAudioQueue)
		go s.sendAudio(s.ch, s.audioQ)
	}
	q := s.audioQ
	s.mu.Unlock()
	select {
	case q <- a:
		return true
	default:
		return false
	}
}

// sendAudio sends queued frames as datagrams until the session ends (a
// SendAudio blocked on a stalled path returns when the session closes the
// channel).
func (s *DirectSession) sendAudio(ch *p2pchan.Channel, q <-chan p2pchan.Audio) {
	for {
		select {
		case <-s.ctx.Done():
			return
		case a := <-q:
			if err := ch.SendAudio(a.Flags, a.Level, a.Seq, a.Timestamp, a.Opus); err != nil {
				s.c.log.Debug("parley: sending call audio over the direct session", "direct", s.id, "err", err)
			}
		}
	}
}
