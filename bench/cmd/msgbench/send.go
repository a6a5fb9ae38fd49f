package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

// sender posts into one conversation: through the SDK (sdkPost) or over
// the wire protocol directly (wireClient.post).
type sender struct {
	post func(ctx context.Context, conv, text string) error
	// start, when not nil, sends without waiting (wireClient.start): the
	// open loop then sends from the sender's own goroutine.
	start    func(conv, text string, done func(error)) (uint32, error)
	conv     string
	inflight atomic.Int64
}

// sdkPost posts through an SDK client, waiting for the stored message.
func sdkPost(c *parley.Client) func(ctx context.Context, conv, text string) error {
	return func(ctx context.Context, conv, text string) error {
		_, err := c.Send(ctx, conv, text)
		return err
	}
}

// sendOne posts message id of level l, timed from start (the time the send
// was due: in open loop a late sender counts its lateness).
func (s *sender) sendOne(ctx context.Context, l *level, id int, start int64, textBytes int) {
	l.starts[id].Store(start)
	s.replied(l, id, s.post(ctx, s.conv, messageText(l.num, id, textBytes)))
}

// replied records the outcome of message id of level l.
func (s *sender) replied(l *level, id int, err error) {
	if err != nil {
		l.replied[id].Store(failedSend)
		l.fail(err)
		return
	}
	l.replied[id].Store(now())
}

// closedLoop sends one message at a time, the next as soon as the reply
// to the previous one arrived, until the deadline.
func closedLoop(ctx context.Context, ss []*sender, l *level, until time.Time, textBytes int) {
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(until) {
				id, ok := l.alloc()
				if !ok {
					return
				}
				s.sendOne(ctx, l, id, now(), textBytes)
			}
		}()
	}
	wg.Wait()
}

// openLoop sends at a fixed total rate spread evenly over the senders
// (each at rate/len(ss), phases staggered), whatever the replies do: a
// send is started when it is due, even if earlier ones wait for their
// reply, up to maxInflight per sender (beyond that the send is skipped and
// counted: the system is not keeping up). It returns when every started
// send has finished.
func openLoop(ctx context.Context, ss []*sender, l *level, rate float64, d time.Duration, maxInflight int, textBytes int) {
	interval := time.Duration(float64(time.Second) * float64(len(ss)) / rate)
	begin := now() + int64(10*time.Millisecond)
	end := begin + int64(d)
	var wg sync.WaitGroup
	for i, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			due := begin + int64(interval)*int64(i)/int64(len(ss))
			for ; due < end && ctx.Err() == nil; due += int64(interval) {
				if wait := time.Duration(due - now()); wait > 0 {
					time.Sleep(wait)
				}
				if s.inflight.Load() >= int64(maxInflight) {
					l.skipped.Add(1)
					continue
				}
				id, ok := l.alloc()
				if !ok {
					return
				}
				s.inflight.Add(1)
				wg.Add(1)
				if s.start != nil {
					l.starts[id].Store(due)
					_, err := s.start(s.conv, messageText(l.num, id, textBytes), func(err error) {
						s.replied(l, id, err)
						s.inflight.Add(-1)
						wg.Done()
					})
					if err != nil {
						s.replied(l, id, err)
						s.inflight.Add(-1)
						wg.Done()
					}
					continue
				}
				go func(due int64) {
					defer wg.Done()
					defer s.inflight.Add(-1)
					s.sendOne(ctx, l, id, due, textBytes)
				}(due)
			}
		}()
	}
	wg.Wait()
}

// drainEvents reads and discards a client's events (a sender also
// receives its own messages), counting breaks.
func drainEvents(c *parley.Client, disconnects *atomic.Int64) {
	for ev := range c.Events() {
		if _, ok := ev.(parley.DisconnectedEvent); ok {
			disconnects.Add(1)
		}
	}
}
