package main

import (
	"context"
	"fmt"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

// groupResult is one group call where everyone talks at once.
type groupResult struct {
	size               int
	forwardedMax       int     // most distinct speakers one listener heard
	bytesMean          float64 // bytes/s (UDP payload) received per listener
	bytesMin, bytesMax float64
	pktsMean           float64 // packets/s received per listener
	p50, p99           time.Duration
	err                error
}

// runGroups registers o.groupSize users, makes a group of all of them and
// one of the first o.smallGroup, and in each runs a call where every
// participant sends 50 packets a second with voice activity at a distinct
// level (participant 0 the loudest), measuring what each listener
// receives.
func runGroups(ctx context.Context, c *cluster, o options, logf logFunc) []groupResult {
	fail := func(err error) []groupResult { return []groupResult{{size: o.groupSize, err: err}} }
	addr := c.gateways[0].tcp
	names := make([]string, o.groupSize)
	tokens := make([]string, o.groupSize)
	var owner *parley.Client
	defer func() {
		if owner != nil {
			owner.Close()
		}
	}()
	var members []*parley.Client
	for i := range names {
		cl, err := parley.Dial(ctx, addr, parley.WithPresenceFeed(false), parley.WithDevice("callbench"))
		if err != nil {
			return fail(err)
		}
		names[i] = fmt.Sprintf("grp%02d", i)
		s, err := cl.Register(ctx, names[i], benchPassword)
		if err != nil {
			cl.Close()
			return fail(err)
		}
		tokens[i] = s.Token
		if i == 0 {
			owner = cl
		} else {
			members = append(members, cl)
		}
	}
	big, err := owner.CreateGroup(ctx, "callbench-big", names[1:]...)
	if err != nil {
		return fail(fmt.Errorf("create group: %w", err))
	}
	small, err := owner.CreateGroup(ctx, "callbench-small", names[1:o.smallGroup]...)
	if err != nil {
		return fail(fmt.Errorf("create group: %w", err))
	}
	for i, m := range members {
		if _, err := m.JoinGroup(ctx, big.ID); err != nil {
			return fail(fmt.Errorf("join group: %w", err))
		}
		if i+1 < o.smallGroup {
			if _, err := m.JoinGroup(ctx, small.ID); err != nil {
				return fail(fmt.Errorf("join group: %w", err))
			}
		}
		m.Close() // no logout: the token stays valid
	}
	users := make([]*wireClient, o.groupSize)
	defer func() {
		for _, u := range users {
			if u != nil {
				u.close()
			}
		}
	}()
	for i := range users {
		wc, err := dialWire(ctx, addr)
		if err != nil {
			return fail(err)
		}
		users[i] = wc
		if err := wc.resume(ctx, tokens[i]); err != nil {
			return fail(fmt.Errorf("resume: %w", err))
		}
	}
	var out []groupResult
	for _, g := range []struct {
		conv string
		n    int
	}{{big.ID, o.groupSize}, {small.ID, o.smallGroup}} {
		r := runGroupCall(ctx, o, users[:g.n], g.conv)
		if r.err != nil {
			logf("group call of %d: %v", g.n, r.err)
		} else {
			logf("group call of %d: %.0f bytes/s per listener, up to %d speakers heard", g.n, r.bytesMean, r.forwardedMax)
		}
		out = append(out, r)
	}
	return out
}

func runGroupCall(ctx context.Context, o options, users []*wireClient, conv string) groupResult {
	r := groupResult{size: len(users)}
	legs := make([]*leg, len(users))
	var callID string
	defer func() {
		for i, l := range legs {
			if l != nil {
				l.sock.Close()
				if callID != "" {
					lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
					_ = users[i].leave(lctx, callID)
					cancel()
				}
			}
		}
	}()
	for i, u := range users {
		var err error
		var j interface {
			GetUdpAddr() string
			GetStreamId() uint32
			GetMediaKey() []byte
		}
		if i == 0 {
			jj, e := u.placeIn(ctx, conv)
			if e == nil {
				callID = jj.GetCall().GetCallId()
			}
			j, err = jj, e
		} else {
			j, err = u.join(ctx, callID)
		}
		if err != nil {
			r.err = fmt.Errorf("participant %d: %w", i, err)
			return r
		}
		if legs[i], err = parleyLeg(j.GetUdpAddr(), j.GetStreamId(), j.GetMediaKey(), o.payload); err != nil {
			r.err = err
			return r
		}
		legs[i].level = uint8(10 + 6*i) // 0 is the loudest
	}
	rec := newRecorder(o.warmup, o.groupDuration)
	rec.run(ctx, legs, o.drain)
	secs := o.groupDuration.Seconds()
	r.bytesMin = -1
	for _, l := range legs {
		b := float64(l.bytes.Load()) / secs
		r.bytesMean += b / float64(len(legs))
		r.pktsMean += float64(l.received.Load()) / secs / float64(len(legs))
		if r.bytesMin < 0 || b < r.bytesMin {
			r.bytesMin = b
		}
		r.bytesMax = max(r.bytesMax, b)
		n := 0
		l.speakers.Range(func(_, _ any) bool { n++; return true })
		r.forwardedMax = max(r.forwardedMax, n)
	}
	r.p50, r.p99 = rec.quantile(0.5), rec.quantile(0.99)
	return r
}
