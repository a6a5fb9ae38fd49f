package rdvsvc

import (
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// event publishes P2PEvent{kind} with side's view of rec to that side's
// user (every connection of theirs: a device acts on sessions whose
// device_id is its own, §20.2).
func (s *Service) event(kind parleyv1.P2PEvent_Kind, rec *internalv1.P2PRecord, side string, withIntro bool) {
	me, _ := sides(rec, side)
	data, err := proto.Marshal(&parleyv1.P2PEvent{Kind: kind, Session: s.view(rec, side, withIntro)})
	if err != nil {
		s.log.Error("encode p2p event", "err", err)
		return
	}
	if err := s.nc.Publish(subject.UserP2PEvents(me.GetUserId()), data); err != nil {
		s.log.Warn("publish p2p event", "user", me.GetUserId(), "kind", kind, "err", err)
	}
}

// intro publishes the introduction rec numbers (rec.Intro) to both users,
// each with the other's candidates, one right after the other.
func (s *Service) intro(rec *internalv1.P2PRecord) {
	s.metrics.intros.Inc()
	s.event(evIntro, rec, sideA, true)
	s.event(evIntro, rec, sideB, true)
}
