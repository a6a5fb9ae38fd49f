package parley

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/parleychat/parley/clients/parley/internal/p2pchan"
	"github.com/parleychat/parley/clients/parley/voice"
	"github.com/parleychat/parley/protocol/media"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// CallOptions set up a CallSession's audio.
type CallOptions struct {
	// Input is the audio to send, read every 20 ms (48 kHz mono, 960
	// samples); nil or at io.EOF: nothing is sent (a listener).
	Input voice.PCMSource
	// Output receives the mix of what the others say, a frame every 20 ms
	// (silence included); nil discards it.
	Output voice.PCMSink
	// ForceFrames carries media on the connection (MediaPacket frames)
	// even when the gateway offers UDP.
	ForceFrames bool
	// Encoder tunes the Opus encoder.
	Encoder voice.Options
}

// Media timing (docs/protocol.md §19.4).
const (
	frameInterval     = 20 * time.Millisecond
	probeInterval     = 200 * time.Millisecond // while finding out whether UDP works
	probeGiveUp       = 2 * time.Second        // then media travels as frames
	rttProbeInterval  = 5 * time.Second        // once the path is chosen, for RTT
	keepaliveInterval = 15 * time.Second       // when nothing else was sent
	speakingHold      = 300 * time.Millisecond // Speaking stays on this long after the last voice packet
	speakerForget     = 10 * time.Second       // a speaker's stream unheard this long is dropped
	maxSpeakers       = 64                     // streams a session decodes at most
	rejoinTimeout     = 15 * time.Second
)

// The media transports Stats reports: how packets to and from the
// gateway travel.
const (
	TransportProbing = "probing" // UDP probes sent, no answer yet (media goes as frames meanwhile)
	TransportUDP     = "udp"
	TransportFrames  = "frames"
)

// CallStats are a session's media counters.
type CallStats struct {
	StreamID uint32 // this session's stream now
	// Path is where this side's audio goes: CallRelayed (the gateway's
	// media relay) or CallDirect (a direct session, §20.7).
	Path CallPath
	// Transport is how packets to the gateway travel: TransportUDP,
	// TransportFrames or TransportProbing. While Path is CallDirect only
	// probes and keepalives take it.
	Transport       string
	PacketsSent     uint64        // every packet sealed for the gateway (audio, probes, keepalives)
	AudioSent       uint64        // audio frames sent, either way
	DirectSent      uint64        // audio frames handed to a direct session among them
	PacketsReceived uint64        // audio packets accepted from the others, either way
	DirectReceived  uint64        // of which came over a direct session
	ReceivedUDP     uint64        // of which came from the gateway by UDP (the rest as media frames)
	Dropped         uint64        // packets refused: failed to open, replayed, not ours
	Lost            uint64        // the others' packets never received (from sequence numbers)
	Late            uint64        // packets that came after their frame was played
	Recovered       uint64        // frames recovered by FEC
	Concealed       uint64        // frames concealed
	Jitter          time.Duration // the largest interarrival jitter among the speakers (RFC 3550)
	RTT             time.Duration // the last probe's round trip; 0 before one came back
}

// speaker is one other participant's incoming stream.
type speaker struct {
	win       media.ReplayWindow
	player    *voice.Player
	lastHeard time.Time
	lastVoice time.Time
}

// CallSession is this client's part in a call: it sends the Input's audio
// and plays what the others say into the Output, until Hangup or the end
// of the call (Done). It survives the client's reconnects: it rejoins the
// call with a new stream. Its methods are safe for concurrent use.
//
// Goroutines: the media loop (every 20 ms) and a UDP reader per socket;
// both end when the session does. Audio that goes over a direct session
// (§20.7) is sent by that session's own sender.
type CallSession struct {
	c    *Client
	opts CallOptions
	enc  voice.Encoder
	ctx  context.Context // ends with the session
	stop context.CancelFunc
	wg   sync.WaitGroup
	done chan struct{} // closed when the session is over and its goroutines have ended

	// told are the direct sessions told DirectCall{call, true}: owned by
	// the media loop, then by the end (after the loop returned).
	told map[*DirectSession]bool

	mu        sync.Mutex // guards the fields below
	call      Call
	me        string         // the client's user id
	via       *DirectSession // the direct session the audio goes on; nil: the media relay
	streamID  uint32
	ownStream map[uint32]bool // every stream id this session has held
	key       *media.Key
	replyWin  media.ReplayWindow // probe replies, on our own stream
	udp       *net.UDPConn       // nil: frames only
	transport string
	probeFrom time.Time // when probing started
	nextProbe time.Time
	seq       uint32
	ts        uint32
	dtx       bool // the last frame was a DTX frame not sent
	muted     bool
	inputOver bool
	lastSent  time.Time
	probes    map[uint32]time.Time // probe seq -> sent
	rtt       time.Duration
	speakers  map[uint32]*speaker
	retired   voice.PlayerStats // counters of speakers dropped
	stats     CallStats
	rejoining int // JoinCallRequests after a reconnect in flight
	over      bool
	err       error
	changed   chan struct{} // closed and replaced on every change of call or over
}

func newCallSession(c *Client, o CallOptions) (*CallSession, error) {
	enc, err := voice.NewOpusEncoder(o.Encoder)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(c.ctx)
	return &CallSession{
		c: c, opts: o, enc: enc, ctx: ctx, stop: stop,
		done:      make(chan struct{}),
		ownStream: make(map[uint32]bool),
		probes:    make(map[uint32]time.Time),
		speakers:  make(map[uint32]*speaker),
		told:      make(map[*DirectSession]bool),
		changed:   make(chan struct{}),
	}, nil
}

// install takes a CallJoined in: stream, key, and the media path (a UDP
// socket to probe, or frames).
func (s *CallSession) install(j *parleyv1.CallJoined) error {
	key, err := media.NewKey(j.GetMediaKey())
	if err != nil {
		return fmt.Errorf("%w: call_joined media key: %w", ErrProtocol, err)
	}
	if j.GetStreamId() == 0 {
		return fmt.Errorf("%w: call_joined without a stream id", ErrProtocol)
	}
	var udp *net.UDPConn
	if addr := j.GetUdpAddr(); addr != "" && !s.opts.ForceFrames {
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err == nil {
			udp, err = net.DialUDP("udp", nil, ua)
		}
		if err != nil {
			s.c.log.Warn("parley: call media over UDP unavailable; using frames", "udp_addr", addr, "err", err)
			udp = nil
		}
	}
	var me string
	if sess := s.c.Session(); sess != nil {
		me = sess.UserID
	}
	now := time.Now()
	s.mu.Lock()
	if s.over || s.ctx.Err() != nil {
		s.mu.Unlock()
		if udp != nil {
			_ = udp.Close()
		}
		return errSessionOver
	}
	old := s.udp
	s.me = me
	s.call = callFromWire(j.GetCall())
	s.streamID = j.GetStreamId()
	s.ownStream[s.streamID] = true
	s.key = key
	s.replyWin = media.ReplayWindow{}
	clear(s.probes)
	s.udp = udp
	if udp != nil {
		s.transport = TransportProbing
		s.probeFrom, s.nextProbe = now, now
	} else {
		s.transport = TransportFrames
		s.nextProbe = now.Add(rttProbeInterval)
	}
	s.lastSent = now
	if udp != nil {
		s.wg.Add(1) // under mu while not over: the end closes this socket
		go s.readUDP(udp)
	}
	s.notifyLocked()
	s.mu.Unlock()
	if old != nil {
		_ = old.Close() // its reader ends
	}
	return nil
}

// errSessionOver: a CallJoined came for a session that has ended.
var errSessionOver = errors.New("parley: call session over")

// start runs the media loop.
func (s *CallSession) start() {
	s.wg.Add(1)
	go s.loop()
	go func() {
		<-s.ctx.Done()
		cerr := s.c.Err()
		if cerr == nil {
			cerr = fmt.Errorf("call session: %w", ErrClosed)
		}
		s.mu.Lock()
		if !s.over {
			s.over, s.err = true, cerr
		}
		udp := s.udp
		s.notifyLocked()
		s.mu.Unlock()
		if udp != nil {
			_ = udp.Close()
		}
		s.wg.Wait()
		s.endDirect()
		s.c.removeCall(s)
		close(s.done)
	}()
}

func (s *CallSession) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// finish ends the session with err (nil: the call ended normally).
func (s *CallSession) finish(err error) {
	s.mu.Lock()
	if !s.over {
		s.over, s.err = true, err
		s.notifyLocked()
	}
	s.mu.Unlock()
	s.stop()
}

func (s *CallSession) callID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.call.ID
}

// applyCall takes a call event of this session's call in; userID is the
// client's user.
func (s *CallSession) applyCall(call Call, userID string) {
	call = call.clone()
	s.mu.Lock()
	s.call = call
	s.notifyLocked()
	var replaced bool
	if p, ok := call.Participant(userID); ok && userID != "" && s.rejoining == 0 && !s.ownStream[p.StreamID] {
		// Our user joined from another device, which took our place.
		// (While our own rejoin is under way, the event of that join
		// may come before its reply: not judged then.)
		replaced = true
	}
	s.mu.Unlock()
	switch {
	case call.State == CallEnded:
		s.finish(nil)
	case replaced:
		s.finish(ErrCallReplaced)
	}
}

// rejoin sends JoinCallRequest again after a reconnect and takes the new
// stream and key.
func (s *CallSession) rejoin() {
	s.mu.Lock()
	id, over := s.call.ID, s.over
	if !over {
		s.rejoining++
	}
	s.mu.Unlock()
	if over {
		return
	}
	defer func() {
		s.mu.Lock()
		s.rejoining--
		s.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(s.ctx, rejoinTimeout)
	defer cancel()
	// A reply that comes after the session ended (or the wait timed out)
	// still seated us: take it in, or leave the call if the session is
	// over (Hangup raced with the rejoin).
	late := func(j *parleyv1.CallJoined) {
		if err := s.install(j); errors.Is(err, errSessionOver) {
			s.c.leaveLater(id)
		}
	}
	reply, err := s.c.callRequest(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_JoinCall{JoinCall: &parleyv1.JoinCallRequest{CallId: id}}}, late)
	if err == nil && reply.GetCallJoined() == nil {
		err = fmt.Errorf("%w: expected CallJoined, got %T", ErrProtocol, reply.GetBody())
	}
	if err == nil {
		err = s.install(reply.GetCallJoined())
	}
	switch {
	case err == nil:
		s.c.log.Info("parley: rejoined call after reconnect", "call", id)
	case errors.Is(err, errSessionOver):
		s.c.leaveLater(id)
	case s.ctx.Err() != nil:
	case errors.Is(err, ErrNotFound):
		// The call ended while we were away (its ENDED event is lost):
		// a normal end of the call.
		s.c.log.Info("parley: the call ended during a reconnect", "call", id)
		s.mu.Lock()
		if s.call.State != CallEnded {
			s.call.State = CallEnded
			s.notifyLocked()
		}
		s.mu.Unlock()
		s.finish(nil)
	case Retryable(err) || errors.Is(err, ErrClosed):
		// The next reconnect rejoins again.
		s.c.log.Warn("parley: rejoining call failed; retrying after the next reconnect", "call", id, "err", err)
	default:
		s.finish(fmt.Errorf("rejoining call %s after a reconnect: %w", id, err))
	}
}

// Call returns the call's latest state (from its events), with Speaking
// set from the audio received.
func (s *CallSession) Call() Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.call.clone()
	now := time.Now()
	for i, p := range c.Participants {
		if sp := s.speakers[p.StreamID]; sp != nil && now.Sub(sp.lastVoice) < speakingHold {
			c.Participants[i].Speaking = true
		}
	}
	return c
}

// ID is the call's id.
func (s *CallSession) ID() string { return s.callID() }

// Done is closed when the session is over: hung up, the call ended, the
// client closed, or rejoining after a reconnect failed (Err says).
func (s *CallSession) Done() <-chan struct{} { return s.done }

// Err is why the session ended: nil while it runs and when the call ended
// or was hung up (Call().EndReason says how); ErrCallReplaced, an error
// wrapping ErrClosed, or a failed rejoin otherwise.
func (s *CallSession) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// WaitActive waits until the call is answered (active): nil. If the call
// ends first the error wraps ErrCallEnded and names the reason
// (Call().EndReason); if the session fails, its Err.
func (s *CallSession) WaitActive(ctx context.Context) error {
	for {
		s.mu.Lock()
		state, reason, over, err, changed := s.call.State, s.call.EndReason, s.over, s.err, s.changed
		s.mu.Unlock()
		switch {
		case state == CallActive:
			return nil
		case state == CallEnded:
			return fmt.Errorf("%w: %s", ErrCallEnded, reason)
		case over && err != nil:
			return err
		case over:
			return ErrCallEnded
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Hangup leaves the call and ends the session: a direct call ends for
// both; a group call goes on without the user.
func (s *CallSession) Hangup(ctx context.Context) error {
	s.mu.Lock()
	id, over := s.call.ID, s.over
	s.mu.Unlock()
	var err error
	if !over {
		err = s.c.LeaveCall(ctx, id)
		if errors.Is(err, ErrNotFound) {
			err = nil // it was over already
		}
	}
	s.finish(nil)
	<-s.done
	return err
}

// Mute stops (or resumes) sending audio and tells the others. Muting takes
// effect here at once; while muted only keepalives are sent.
func (s *CallSession) Mute(ctx context.Context, muted bool) error {
	if muted {
		s.setMuted(true)
	}
	err := s.c.okRequest(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_MuteCall{MuteCall: &parleyv1.MuteCallRequest{CallId: s.callID(), Muted: muted}}})
	if err == nil && !muted {
		s.setMuted(false)
	}
	return err
}

func (s *CallSession) setMuted(m bool) {
	s.mu.Lock()
	s.muted = m
	s.mu.Unlock()
}

// Stats returns the media counters.
func (s *CallSession) Stats() CallStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.StreamID, st.Transport, st.RTT = s.streamID, s.transport, s.rtt
	if s.via != nil {
		st.Path = CallDirect
	}
	st.Lost, st.Late, st.Recovered, st.Concealed = s.retired.Lost, s.retired.Late, s.retired.Recovered, s.retired.Concealed
	for _, sp := range s.speakers {
		ps := sp.player.Stats()
		st.Lost += ps.Lost
		st.Late += ps.Late
		st.Recovered += ps.Recovered
		st.Concealed += ps.Concealed
		st.Jitter = max(st.Jitter, ps.Jitter)
	}
	return st
}

// outPacket is a sealed packet and where it goes, or an audio frame for a
// direct session.
type outPacket struct {
	pkt    []byte
	udp    *net.UDPConn   // nil: as a media frame
	direct *DirectSession // set: audio goes to this session (§20.7), pkt unused
	audio  p2pchan.Audio
}

// loop is the media clock: every 20 ms it reads, encodes and sends a
// frame, sends probes and keepalives when due, and mixes the speakers
// into the Output. It ends with the session.
func (s *CallSession) loop() {
	defer s.wg.Done()
	tick := time.NewTicker(frameInterval)
	defer tick.Stop()
	in := make([]int16, voice.FrameSamples)
	out := make([]int16, voice.FrameSamples)
	frame := make([]int16, voice.FrameSamples)
	acc := make([]int32, voice.FrameSamples)
	enc := make([]byte, voice.MaxPacket)
	var sends []outPacket
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		s.steerDirect()
		now := time.Now()

		// The input, outside the lock (a source may take a moment).
		s.mu.Lock()
		read := s.opts.Input != nil && !s.inputOver
		s.mu.Unlock()
		var have bool
		if read {
			switch err := s.opts.Input.ReadFrame(in); {
			case err == nil:
				have = true
			case errors.Is(err, io.EOF):
				s.mu.Lock()
				s.inputOver = true
				s.mu.Unlock()
			default:
				s.c.log.Warn("parley: call input failed; sending nothing more", "err", err)
				s.mu.Lock()
				s.inputOver = true
				s.mu.Unlock()
			}
		}
		var n int
		var level uint8
		if have {
			level = voice.Level(in)
			var err error
			if n, err = s.enc.Encode(in, enc); err != nil {
				s.c.log.Warn("parley: encoding a frame", "err", err)
				n = 0
			}
		}

		sends = sends[:0]
		s.mu.Lock()
		if have && n > 0 && !s.muted {
			if n <= 2 {
				// A DTX frame (a TOC byte, no audio): not sent; the
				// receiver's decoder fills the pause.
				s.dtx = true
			} else {
				var flags media.Flags
				if level <= voice.VoiceLevel {
					flags |= media.FlagVoice
				} else if s.dtx {
					flags |= media.FlagDTX // a comfort-noise update between DTX frames
				}
				s.dtx = false
				if s.via != nil {
					// Direct (§20.7): the next sequence number of our
					// stream, so the peer keeps one replay window and
					// jitter buffer across a switch.
					s.seq++
					// Counted in AudioSent by transmit, with DirectSent
					// or as the relay's, so no snapshot of the stats
					// sees it in one and not the other.
					sends = append(sends, outPacket{direct: s.via, audio: p2pchan.Audio{Flags: uint8(flags), Level: level,
						Seq: s.seq, Timestamp: s.ts, Opus: bytes.Clone(enc[:n])}})
				} else {
					before := len(sends)
					sends = s.sealLocked(sends, media.Header{Type: media.TypeAudio, Flags: flags, Level: level}, enc[:n], now)
					if len(sends) > before { // sealed: a sealing error sends nothing
						s.stats.AudioSent++
					}
				}
			}
		}
		s.ts += media.FrameTicks // the media clock runs whether or not a frame is sent
		sends = s.probeLocked(sends, now)
		if now.Sub(s.lastSent) >= keepaliveInterval {
			sends = s.sealLocked(sends, media.Header{Type: media.TypeKeepalive}, nil, now)
		}

		// The output: every speaker's frame due now, mixed.
		clear(acc)
		for id, sp := range s.speakers {
			if now.Sub(sp.lastHeard) > speakerForget {
				s.retire(id, sp)
				continue
			}
			if err := sp.player.Frame(now, frame); err != nil {
				s.c.log.Debug("parley: decoding a call frame", "stream", id, "err", err)
			}
			voice.MixAdd(acc, frame)
		}
		s.mu.Unlock()
		voice.Clip(out, acc)

		for _, p := range sends {
			s.transmit(p)
		}
		if s.opts.Output != nil {
			if err := s.opts.Output.WriteFrame(out); err != nil {
				s.c.log.Warn("parley: call output failed", "err", err)
			}
		}
	}
}

// retire drops a speaker, keeping its counters. s.mu is held.
func (s *CallSession) retire(id uint32, sp *speaker) {
	ps := sp.player.Stats()
	s.retired.Lost += ps.Lost
	s.retired.Late += ps.Late
	s.retired.Recovered += ps.Recovered
	s.retired.Concealed += ps.Concealed
	delete(s.speakers, id)
}

// probeLocked decides the transport and appends a probe when one is due.
func (s *CallSession) probeLocked(sends []outPacket, now time.Time) []outPacket {
	if s.transport == TransportProbing && now.Sub(s.probeFrom) >= probeGiveUp {
		s.c.log.Info("parley: no answer to UDP probes; call media goes over the connection", "call", s.call.ID)
		s.transport = TransportFrames
		s.nextProbe = now.Add(rttProbeInterval)
	}
	if now.Before(s.nextProbe) {
		return sends
	}
	if s.transport == TransportProbing {
		s.nextProbe = now.Add(probeInterval)
	} else {
		s.nextProbe = now.Add(rttProbeInterval)
	}
	for seq, at := range s.probes { // unanswered probes are forgotten
		if now.Sub(at) > probeGiveUp {
			delete(s.probes, seq)
		}
	}
	s.probes[s.seq+1] = now
	return s.sealLocked(sends, media.Header{Type: media.TypeProbe}, nil, now)
}

// sealLocked seals a packet on our stream with the next sequence number
// and appends it to sends with its route: UDP once it works (and probes
// while finding out), frames otherwise.
func (s *CallSession) sealLocked(sends []outPacket, h media.Header, payload []byte, now time.Time) []outPacket {
	s.seq++
	h.Seq, h.Timestamp = s.seq, s.ts
	return s.sealSeqLocked(sends, h, payload, now)
}

// sealSeqLocked seals a packet whose sequence number and timestamp h
// already has (one taken for a direct frame that could not go: no packet
// was sealed with it).
func (s *CallSession) sealSeqLocked(sends []outPacket, h media.Header, payload []byte, now time.Time) []outPacket {
	h.StreamID = s.streamID
	pkt, err := s.key.Seal(make([]byte, 0, media.Overhead+len(payload)), media.Up, h, payload)
	if err != nil {
		s.c.log.Warn("parley: sealing a media packet", "err", err)
		return sends
	}
	var udp *net.UDPConn
	if s.transport == TransportUDP || (s.transport == TransportProbing && h.Type == media.TypeProbe) {
		udp = s.udp
	}
	s.lastSent = now
	s.stats.PacketsSent++
	return append(sends, outPacket{pkt: pkt, udp: udp})
}

func (s *CallSession) transmit(p outPacket) {
	if p.direct != nil {
		if p.direct.queueAudio(p.audio) {
			s.mu.Lock()
			s.stats.AudioSent++
			s.stats.DirectSent++
			s.mu.Unlock()
			return
		}
		// The direct session cannot take it now (closed, or backed up):
		// this frame goes through the media relay instead.
		a := p.audio
		s.mu.Lock()
		var out []outPacket
		if !s.over && s.key != nil {
			out = s.sealSeqLocked(nil, media.Header{Type: media.TypeAudio, Flags: media.Flags(a.Flags), Level: a.Level,
				Seq: a.Seq, Timestamp: a.Timestamp}, a.Opus, time.Now())
			if len(out) > 0 {
				s.stats.AudioSent++
			}
		}
		s.mu.Unlock()
		for _, o := range out {
			s.transmit(o)
		}
		return
	}
	if p.udp != nil {
		if _, err := p.udp.Write(p.pkt); err != nil {
			s.c.log.Debug("parley: sending a media packet over UDP", "err", err)
		}
		return
	}
	s.c.sendMedia(p.pkt)
}

// readUDP reads the socket until it is closed (by a rejoin or the end of
// the session).
func (s *CallSession) readUDP(udp *net.UDPConn) {
	defer s.wg.Done()
	buf := make([]byte, media.MaxPacket+1)
	for {
		n, err := udp.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.ctx.Err() != nil {
				return
			}
			// ICMP port unreachable and the like: keep listening.
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(frameInterval):
			}
			continue
		}
		s.receive(buf[:n], true)
	}
}

// receive takes a packet from the gateway in. It reports whether the
// session's key opened it.
func (s *CallSession) receive(pkt []byte, viaUDP bool) bool {
	s.mu.Lock()
	ok, echo := s.receiveLocked(pkt, viaUDP, time.Now())
	s.mu.Unlock()
	if echo != nil {
		s.transmit(*echo)
	}
	return ok
}

// receiveLocked is receive with s.mu held; echo is a probe to send at
// once, echoing a path token (§19.3).
func (s *CallSession) receiveLocked(pkt []byte, viaUDP bool, now time.Time) (ok bool, echo *outPacket) {
	if s.over || s.key == nil {
		return false, nil
	}
	h, payload, err := s.key.Open(nil, media.Down, pkt)
	if err != nil {
		s.stats.Dropped++
		return false, nil
	}
	switch h.Type {
	case media.TypeProbeReply:
		if h.StreamID != s.streamID || !s.replyWin.Accept(h.Seq) {
			s.stats.Dropped++
			return true, nil
		}
		if at, ok := s.probes[h.Seq]; ok {
			s.rtt = now.Sub(at)
			delete(s.probes, h.Seq)
		}
		if viaUDP && s.transport == TransportProbing {
			s.c.log.Info("parley: call media goes over UDP", "call", s.call.ID, "rtt", s.rtt)
			s.transport = TransportUDP
			s.nextProbe = now.Add(rttProbeInterval)
		}
		if viaUDP && len(payload) == media.PathTokenLen {
			// The gateway does not send media to this address until it
			// has proven it receives here: echo the token from it now.
			s.probes[s.seq+1] = now
			if out := s.sealLocked(nil, media.Header{Type: media.TypeProbe}, payload, now); len(out) == 1 {
				echo = &out[0]
			}
		}
	case media.TypeAudio:
		if s.ownStream[h.StreamID] {
			s.stats.Dropped++ // the server never sends us our own
			return true, nil
		}
		if s.takeAudioLocked(h.StreamID, h.Seq, h.Timestamp, h.Flags, payload, now) && viaUDP {
			s.stats.ReceivedUDP++
		}
	default:
		s.stats.Dropped++ // probes and keepalives only go up
	}
	return true, echo
}

// takeAudioLocked hands a speaker's audio frame, relayed or direct, to its
// replay window and jitter buffer. It reports whether the frame was taken.
// s.mu is held.
func (s *CallSession) takeAudioLocked(stream, seq, ts uint32, flags media.Flags, payload []byte, now time.Time) bool {
	sp := s.speakers[stream]
	if sp == nil {
		if len(s.speakers) >= maxSpeakers {
			s.stats.Dropped++
			return false
		}
		dec, err := voice.NewOpusDecoder()
		if err != nil {
			s.c.log.Warn("parley: opus decoder", "err", err)
			return false
		}
		sp = &speaker{player: voice.NewPlayer(dec)}
		s.speakers[stream] = sp
	}
	if !sp.win.Accept(seq) {
		s.stats.Dropped++
		return false
	}
	sp.player.Push(seq, ts, payload, now)
	sp.lastHeard = now
	if flags&media.FlagVoice != 0 {
		sp.lastVoice = now
	}
	s.stats.PacketsReceived++
	return true
}
