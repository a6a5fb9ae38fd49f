package relaysvc

import (
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/mediabus"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/media"
)

// Speaker selection in calls above Config.ForwardAll participants.
const (
	// reselectEvery: the loudest streams are chosen again this often.
	reselectEvery = 100 * time.Millisecond
	// levelSlot and levelSlots: a stream's loudness is the mean of
	// 127-level over its voice-flagged packets of the last
	// levelSlots*levelSlot (1 s), kept as per-slot sums.
	levelSlot  = 100 * time.Millisecond
	levelSlots = 10
	// hysteresis is added to the score of a stream already forwarded, so
	// two speakers about as loud do not swap places every 100 ms (in
	// RFC 6464 level units: dB).
	hysteresis = 6
)

// forwarder forwards the media of one call this replica owns: it holds the
// subscription to MediaUp(call) (the NATS client delivers its messages one
// at a time, on one goroutine) and the participants' streams.
type forwarder struct {
	s    *Service
	id   string
	down string // subject.MediaDown(id)
	sub  *nats.Subscription

	mu         sync.Mutex // guards everything below
	streams    map[uint32]*streamState
	roster     []uint32 // the participants' stream ids as last published, sorted
	rev        uint64   // the revision of the call's record they were taken from
	rosterAt   time.Time
	selectedAt time.Time
	top        []*streamState // scratch of reselect, cap Config.MaxSpeakers
	ids        []uint32       // scratch of Alive parsing
	stopped    bool
}

// streamState is one participant's stream.
type streamState struct {
	id       uint32
	user     string
	name     string
	muted    bool
	seen     time.Time // last Alive or audio
	selected bool      // among the loudest (calls above ForwardAll)
	level    levelWindow
}

// lostSeat is a participant whose stream no gateway reported for
// Config.ParticipantTimeout.
type lostSeat struct {
	user, name string
	stream     uint32
}

// newForwarder subscribes to call id's MediaUp; every participant counts
// as seen now (as after a takeover).
func newForwarder(s *Service, id string) (*forwarder, error) {
	f := &forwarder{s: s, id: id, down: subject.MediaDown(id), streams: map[uint32]*streamState{},
		top: make([]*streamState, 0, s.cfg.MaxSpeakers)}
	sub, err := s.nc.Subscribe(subject.MediaUp(id), func(m *nats.Msg) { f.handle(m.Data) })
	if err != nil {
		return nil, err
	}
	// Audio is 50 messages a second per speaker: a burst waits in the
	// client rather than being dropped.
	_ = sub.SetPendingLimits(65536, 64<<20)
	f.sub = sub
	s.metrics.active.Inc()
	return f, nil
}

// update takes the participants of revision rev of the record (newer than
// any before: owner.apply) and publishes the roster when it changed.
func (f *forwarder) update(rec *internalv1.CallRecord, rev uint64) {
	now := f.s.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev = rev
	keep := make(map[uint32]*streamState, len(rec.GetCall().GetParticipants()))
	for _, p := range rec.GetCall().GetParticipants() {
		st := f.streams[p.GetStreamId()]
		if st == nil {
			st = &streamState{id: p.GetStreamId(), seen: now}
		}
		st.user, st.name, st.muted = p.GetUserId(), p.GetUsername(), p.GetMuted()
		keep[st.id] = st
	}
	f.streams = keep
	roster := make([]uint32, 0, len(keep))
	for id := range keep {
		roster = append(roster, id)
	}
	slices.Sort(roster)
	if !slices.Equal(roster, f.roster) || f.rosterAt.IsZero() {
		f.roster = roster
		f.publishRoster(now)
	}
}

// publishRoster sends the roster, with the revision it is of, so a gateway
// can tell it from an older one another replica may still be sending; call
// with f.mu held.
func (f *forwarder) publishRoster(now time.Time) {
	f.rosterAt = now
	if err := f.s.nc.Publish(f.down, mediabus.AppendRoster(nil, mediabus.Roster{Rev: f.rev, Streams: f.roster})); err != nil {
		f.s.log.Debug("publish roster", "call", f.id, "err", err)
	}
}

// tick repeats the roster every Config.RosterInterval and returns the
// participants unseen for Config.ParticipantTimeout.
func (f *forwarder) tick(now time.Time) []lostSeat {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now.Sub(f.rosterAt) >= f.s.cfg.RosterInterval {
		f.publishRoster(now)
	}
	var lost []lostSeat
	for _, st := range f.streams {
		if now.Sub(st.seen) > f.s.cfg.ParticipantTimeout {
			lost = append(lost, lostSeat{user: st.user, name: st.name, stream: st.id})
		}
	}
	return lost
}

// stop unsubscribes; ended: the call is over (at revision rev) and the
// gateways are sent the empty roster.
func (f *forwarder) stop(ended bool, rev uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.stopped = true
	_ = f.sub.Unsubscribe()
	if ended {
		f.roster, f.rev = f.roster[:0], max(f.rev, rev)
		f.publishRoster(f.s.now())
	}
	f.s.metrics.active.Dec()
}

// handle is one message on MediaUp(call): the per-packet path.
func (f *forwarder) handle(data []byte) {
	m := f.s.metrics
	switch mediabus.KindOf(data) {
	case mediabus.KindAudio:
		a, err := mediabus.ParseAudio(data)
		if err != nil || a.Header.Type != media.TypeAudio {
			m.dropMalformed.Inc()
			return
		}
		now := f.s.now()
		f.mu.Lock()
		st := f.streams[a.Header.StreamID]
		if st == nil || f.stopped {
			f.mu.Unlock()
			m.dropNotParticipant.Inc()
			return
		}
		st.seen = now
		if st.muted {
			f.mu.Unlock()
			m.dropMuted.Inc()
			return
		}
		if a.Header.Flags&media.FlagVoice != 0 {
			st.level.add(now, media.MaxLevel-uint32(a.Header.Level))
		}
		forward := true
		if len(f.streams) > f.s.cfg.ForwardAll {
			if now.Sub(f.selectedAt) >= reselectEvery {
				f.reselect(now)
			}
			forward = st.selected
		}
		f.mu.Unlock()
		if !forward {
			m.dropNotLoudest.Inc()
			return
		}
		if err := f.s.nc.Publish(f.down, data); err != nil {
			f.s.log.Debug("forward audio", "call", f.id, "err", err)
			return
		}
		m.forwarded.Inc()
	case mediabus.KindAlive:
		now := f.s.now()
		f.mu.Lock()
		defer f.mu.Unlock()
		_, ids, err := mediabus.ParseAlive(data, f.ids[:0])
		f.ids = ids[:0]
		if err != nil {
			m.dropMalformed.Inc()
			return
		}
		for _, id := range ids {
			if st := f.streams[id]; st != nil {
				st.seen = now
			}
		}
	default:
		m.dropMalformed.Inc()
	}
}

// reselect chooses the Config.MaxSpeakers loudest unmuted streams that
// spoke in the last second; call with f.mu held.
func (f *forwarder) reselect(now time.Time) {
	f.selectedAt = now
	top := f.top[:0]
	score := func(st *streamState) uint32 {
		v := st.level.mean(now)
		if v > 0 && st.selected {
			v += hysteresis
		}
		return v
	}
	better := func(a, b *streamState) bool {
		sa, sb := score(a), score(b)
		return sa > sb || sa == sb && a.id < b.id
	}
	// The scores read the previous choice (st.selected, the head start):
	// it is cleared only once the new one is made.
	for _, st := range f.streams {
		if st.muted || st.level.mean(now) == 0 {
			continue
		}
		if len(top) < cap(top) {
			top = append(top, st)
		} else if better(st, top[len(top)-1]) {
			top[len(top)-1] = st
		} else {
			continue
		}
		for i := len(top) - 1; i > 0 && better(top[i], top[i-1]); i-- {
			top[i], top[i-1] = top[i-1], top[i]
		}
	}
	for _, st := range f.streams {
		st.selected = false
	}
	for _, st := range top {
		st.selected = true
	}
	f.top = top[:0]
}

// levelWindow is a stream's recent loudness: per 100 ms slot, the sum and
// count of 127-level over its voice-flagged packets.
type levelWindow struct {
	slots [levelSlots]struct {
		at     int64 // slot number (time / levelSlot)
		sum, n uint32
	}
}

func (w *levelWindow) add(now time.Time, v uint32) {
	at := now.UnixNano() / int64(levelSlot)
	s := &w.slots[at%levelSlots]
	if s.at != at {
		s.at, s.sum, s.n = at, 0, 0
	}
	s.sum += v
	s.n++
}

// mean is the mean over the last second's voice packets, 0 when none.
func (w *levelWindow) mean(now time.Time) uint32 {
	at := now.UnixNano() / int64(levelSlot)
	var sum, n uint32
	for i := range w.slots {
		if s := &w.slots[i]; at-s.at < levelSlots && s.n > 0 {
			sum += s.sum
			n += s.n
		}
	}
	if n == 0 {
		return 0
	}
	return sum / n
}
