package conn

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/parleychat/parley/gateway/internal/connlimit"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// Connection caps and the frame limit before login (docs/protocol.md §2,
// §11).
//
// A connection over a cap gets one frame, a fatal Error, before the
// gateway has read anything from it, and is closed:
//
//	-max-conns                  UNAVAILABLE   the gateway is full: try later or another replica
//	-max-conns-per-addr         RATE_LIMITED  retry_after_ms 5-10 s
//	-max-unauth-conns-per-addr  RATE_LIMITED  retry_after_ms 1-2 s
//
// The hints are jittered so that clients refused together do not come
// back together. Connections without a session free their place within
// seconds in the normal course (a login takes one round trip), hence the
// shorter hint.

// refuse queues the fatal Error for a connection refused by a cap.
func (c *Conn) refuse(v connlimit.Verdict) {
	var (
		code  parleyv1.ErrorCode
		msg   string
		retry time.Duration
		name  string
	)
	switch v {
	case connlimit.Full:
		code, name = parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "total"
		msg = "the server is at its connection limit; try again later"
	case connlimit.AddrFull:
		code, name = parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, "per_addr"
		msg = "too many connections from your address; try again later"
		retry = 5*time.Second + rand.N(5*time.Second)
	default:
		code, name = parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, "unauth_per_addr"
		msg = "too many connections without a session from your address; try again later"
		retry = time.Second + rand.N(time.Second)
	}
	h := c.h
	h.Metrics.Refused.WithLabelValues(name).Inc()
	h.Metrics.HandshakeFailures.WithLabelValues(errcode.ShortName(code)).Inc()
	c.countError(code)
	h.refusals.note(c, name)
	f := wire.ErrorFrame(0, code, msg, true)
	f.GetError().RetryAfterMs = uint32(retry.Milliseconds())
	c.out.final(f)
}

// refusalLog logs refused connections at most once per refusalLogEvery,
// with how many were refused since the last line: a flood of connections
// must not become a flood of log lines.
type refusalLog struct {
	mu    sync.Mutex // guards the fields below
	last  time.Time
	quiet int // refusals not logged since last
}

const refusalLogEvery = 10 * time.Second

func (l *refusalLog) note(c *Conn, capName string) {
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.last) < refusalLogEvery {
		l.quiet++
		l.mu.Unlock()
		c.debug("connection refused", "cap", capName)
		return
	}
	quiet := l.quiet
	l.last, l.quiet = now, 0
	l.mu.Unlock()
	c.log().Warn("connection refused: over a connection cap", "cap", capName, "refused_since_last_log", quiet)
}

// shedLog counts sheddable events dropped for connections
// (parley_gateway_events_shed_total) and logs them at most once per
// refusalLogEvery, with the totals since the last line: under overload
// every connection sheds, and that must not become a line per event.
type shedLog struct {
	mu     sync.Mutex // guards the fields below
	last   time.Time
	events int // events shed since last
	times  int // shedding occasions since last
}

func (l *shedLog) note(c *Conn, reason string, n int) {
	if n <= 0 {
		return
	}
	c.h.Metrics.EventsShed.WithLabelValues(reason).Add(float64(n))
	now := time.Now()
	l.mu.Lock()
	l.events += n
	l.times++
	if now.Sub(l.last) < refusalLogEvery {
		l.mu.Unlock()
		return
	}
	events, times := l.events, l.times
	l.last, l.events, l.times = now, 0, 0
	l.mu.Unlock()
	c.log().Info("room events shed for clients behind (they read them back from history)",
		"reason", reason, "events_since_last_log", events, "occasions_since_last_log", times)
}

// setFrameLimit sets the largest frame the connection accepts from now on:
// PreloginFrameSize while it has no session, MaxFrameSize with one. Called
// by the reader goroutine, or by the frame goroutine it waits for.
func (c *Conn) setFrameLimit(max uint32) {
	if max == 0 || max > c.h.Limits.MaxFrameSize {
		max = c.h.Limits.MaxFrameSize
	}
	c.frameLimit = max
	c.t.SetReadLimit(max)
}

// sessionChanged applies what a session changes besides the identity:
// the frame limit, and whether the connection counts as unauthenticated
// under -max-unauth-conns-per-addr.
func (c *Conn) sessionChanged(authenticated bool) {
	c.slot.Authenticated(authenticated)
	if authenticated {
		c.setFrameLimit(c.h.Limits.MaxFrameSize)
	} else {
		c.setFrameLimit(c.h.Limits.PreloginFrameSize)
	}
}
