package parley

import (
	"context"
	"errors"
	"time"
)

// The sync worker reads from history what live delivery did not bring:
// after every login, resume and reconnect it lists the conversations and
// reads each one from where the client is up to its last seq (a full
// sync); when a live message leaves a gap it reads that gap (a catch-up).
// The reader goroutine cannot do this itself (it must stay free to
// dispatch the replies), so live messages only mark the work and wake the
// worker. One worker: catch-ups of a conversation never overlap.

const (
	// catchUpPage is how many messages one catch-up request reads (the
	// protocol's maximum).
	catchUpPage = 200
	// syncTimeout bounds one full sync or catch-up; work that fails is
	// retried (a reconnect starts a new full sync anyway).
	syncTimeout = time.Minute
	// syncRetryPause is the wait before retrying work the server could not
	// do (UNAVAILABLE, TIMEOUT).
	syncRetryPause = time.Second
	// maxStalledPages: a catch-up that reads this many pages in a row
	// without progress gives up until the next trigger.
	maxStalledPages = 3
)

// catchUpGrace is how long a gap left by a live message waits for the live
// events still on their way to fill it before history is read. Most gaps
// fill themselves: a Send reply overtakes the events of messages stored
// just before it (the gateway batches a busy room's events for up to 20
// ms), and two messaging replicas' events can interleave. Reading history
// at once made every member who sent into a busy room read history for
// nearly every message they sent (in msgbench's room, more messaging CPU
// than the sends themselves). A gap that is real is read this much later.
var catchUpGrace = 250 * time.Millisecond

// offerLocked feeds a live message to the tracker, emits what it releases
// and schedules the work it needs. c.mu is held.
func (c *Client) offerLocked(m Message) {
	if c.session == nil {
		return
	}
	emit, n := c.track.offer(m)
	c.emitLocked(emit)
	switch n {
	case needCatchUp:
		c.catchUpLaterLocked(m.Conversation)
	case needListing:
		c.requestSyncLocked()
	}
}

// catchUpLaterLocked schedules a catch-up of conv after catchUpGrace, if
// the gap is still there then (one wait per conversation at a time). c.mu
// is held.
func (c *Client) catchUpLaterLocked(conv string) {
	if _, waiting := c.gapWaits[conv]; waiting {
		return
	}
	c.gapWaits[conv] = time.AfterFunc(catchUpGrace, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.gapWaits, conv)
		if c.session != nil && c.track.pendingCount(conv) > 0 {
			c.catchUps[conv] = struct{}{}
			c.wakeSync()
		}
	})
}

func (c *Client) emitLocked(ms []Message) {
	for _, m := range ms {
		c.events.push(MessageEvent{Message: m})
	}
}

// requestSyncLocked asks the worker for a full sync. c.mu is held.
func (c *Client) requestSyncLocked() {
	c.syncAll = true
	c.wakeSync()
}

func (c *Client) wakeSync() {
	select {
	case c.syncWake <- struct{}{}:
	default:
	}
}

// retrySyncLater asks for a full sync again after a pause, for work that
// failed for a reason a reconnect would not fix.
func (c *Client) retrySyncLater() {
	// After the client ends the flag is set on nobody's behalf: harmless.
	time.AfterFunc(syncRetryPause, func() {
		c.mu.Lock()
		c.requestSyncLocked()
		c.mu.Unlock()
	})
}

// syncLoop is the sync worker. It ends when the client ends.
func (c *Client) syncLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.syncWake:
		case <-c.ctx.Done():
			return
		}
		for c.syncStep() {
		}
	}
}

// syncStep does one piece of work and reports whether there was any.
func (c *Client) syncStep() bool {
	c.mu.Lock()
	if c.session == nil || c.ended != nil {
		c.syncAll = false
		clear(c.catchUps)
		c.mu.Unlock()
		return false
	}
	epoch := c.track.epoch
	if c.syncAll {
		c.syncAll = false
		c.mu.Unlock()
		c.fullSync(epoch)
		return true
	}
	for conv := range c.catchUps {
		delete(c.catchUps, conv)
		c.mu.Unlock()
		if err := c.catchUp(conv, epoch); err != nil {
			c.syncFailed("catch-up of "+conv, err)
		}
		return true
	}
	c.mu.Unlock()
	return false
}

// syncFailed decides what failed work becomes: a break is followed by a
// reconnect, whose full sync covers it; the server being busy is retried.
func (c *Client) syncFailed(what string, err error) {
	switch {
	case c.ctx.Err() != nil, errors.Is(err, ErrClosed), errors.Is(err, ErrUnauthenticated):
		return
	case errors.Is(err, ErrConnectionLost):
		c.log.Debug("parley: "+what+" cut by a break; the reconnect syncs", "err", err)
	case Retryable(err):
		c.log.Warn("parley: "+what+" failed; retrying", "err", err)
		c.retrySyncLater()
	default:
		c.log.Warn("parley: "+what+" failed", "err", err)
	}
}

// fullSync lists the conversations, sets the start point of those this
// Client has not seen, reads each from where it is to its last seq, then
// reports SyncedEvent.
func (c *Client) fullSync(epoch uint64) {
	ctx, cancel := context.WithTimeout(c.ctx, syncTimeout)
	defer cancel()
	convs, err := c.Conversations(ctx)
	if err != nil {
		c.syncFailed("sync", err)
		return
	}
	c.mu.Lock()
	if c.track.epoch != epoch {
		c.mu.Unlock()
		return
	}
	var lagging []string
	for _, cv := range convs {
		emit, lags := c.track.start(cv)
		c.emitLocked(emit)
		if lags {
			lagging = append(lagging, cv.ID)
		}
	}
	for _, conv := range c.track.unlisted() {
		c.emitLocked(c.track.fallback(conv))
		lagging = append(lagging, conv)
	}
	for _, conv := range lagging {
		delete(c.catchUps, conv) // caught up below
	}
	c.mu.Unlock()

	for _, conv := range lagging {
		if err := c.catchUp(conv, epoch); err != nil {
			c.syncFailed("sync of "+conv, err)
			if errors.Is(err, ErrPermissionDenied) || errors.Is(err, ErrNotFound) {
				// A group the user just left or was removed from: its
				// history is closed now; the others still sync.
				continue
			}
			return
		}
	}
	c.mu.Lock()
	if c.track.epoch == epoch {
		c.events.push(SyncedEvent{Conversations: convs})
	}
	c.mu.Unlock()
}

// catchUp reads conv from its delivered seq until the client has
// everything up to the conversation's last seq (and the live messages that
// wait), emitting in order.
func (c *Client) catchUp(conv string, epoch uint64) error {
	ctx, cancel := context.WithTimeout(c.ctx, syncTimeout)
	defer cancel()
	stalled := 0
	for {
		c.mu.Lock()
		if c.track.epoch != epoch {
			c.mu.Unlock()
			return nil
		}
		from, known := c.track.delivered(conv)
		c.mu.Unlock()
		if !known {
			return nil // the next listing sets its start point
		}
		if err := c.events.waitRoom(ctx, c.cfg.eventBuffer); err != nil {
			return err
		}
		page, last, err := c.historyAfter(ctx, conv, from, catchUpPage)
		if err != nil {
			return err
		}
		c.mu.Lock()
		if c.track.epoch != epoch {
			c.mu.Unlock()
			return nil
		}
		emit := c.track.history(conv, page)
		c.emitLocked(emit)
		now, _ := c.track.delivered(conv)
		waiting := c.track.pendingCount(conv)
		c.mu.Unlock()
		if now >= last && waiting == 0 {
			return nil
		}
		if len(emit) > 0 {
			stalled = 0
			continue
		}
		if stalled++; stalled >= maxStalledPages {
			c.log.Warn("parley: history does not fill a gap", "conversation", conv, "delivered", now, "last_seq", last, "waiting", waiting)
			return nil
		}
	}
}

// autoAcked records a message the application received (WithAutoAck) for
// ackLoop to acknowledge.
func (c *Client) autoAcked(ev Event) {
	me, ok := ev.(MessageEvent)
	if !ok {
		return
	}
	c.ackMu.Lock()
	if me.Message.Seq > c.acks[me.Message.Conversation] {
		c.acks[me.Message.Conversation] = me.Message.Seq
	}
	c.ackMu.Unlock()
	select {
	case c.ackWake <- struct{}{}:
	default:
	}
}

// ackLoop acknowledges, per conversation, the highest seq the application
// received; many messages in a row cost one Ack. It ends when the client
// ends.
func (c *Client) ackLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ackWake:
		case <-c.ctx.Done():
			return
		}
		c.ackMu.Lock()
		todo := c.acks
		c.acks = make(map[string]uint64)
		c.ackMu.Unlock()
		for conv, seq := range todo {
			ctx, cancel := context.WithTimeout(c.ctx, syncTimeout)
			err := c.Ack(ctx, conv, seq)
			cancel()
			if err == nil || c.ctx.Err() != nil || errors.Is(err, ErrClosed) || errors.Is(err, ErrUnauthenticated) {
				continue
			}
			c.log.Warn("parley: auto-ack failed", "conversation", conv, "seq", seq, "err", err)
			if Retryable(err) {
				c.ackMu.Lock()
				if seq > c.acks[conv] {
					c.acks[conv] = seq
				}
				c.ackMu.Unlock()
				time.AfterFunc(syncRetryPause, func() {
					select {
					case c.ackWake <- struct{}{}:
					default:
					}
				})
			}
		}
	}
}
