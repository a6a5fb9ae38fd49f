package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Appended is the outcome of Append.
type Appended struct {
	Message *parleyv1.Message
	// Duplicate: msgID was stored before (within the duplicate window);
	// Message is that original message and nothing new was stored.
	Duplicate bool
	// Conflicts counts the appends lost to other replicas before this one
	// went through (for metrics).
	Conflicts int
}

// Append stores m as the next message of m.Conversation: it sets m.Seq and
// m.Id. msgID is the publish de-duplication id. It returns only after the
// stream acknowledged the message (or recognised msgID as a duplicate).
//
// onStored, when not nil, is called with a newly stored message while the
// conversation is still locked, so the live events a replica publishes from
// it go out in seq order (publishing after unlocking let concurrent sends
// overtake each other). It must be quick: it holds up the conversation's
// next append. It is not called for a duplicate.
func (s *Store) Append(ctx context.Context, m *parleyv1.Message, msgID string, onStored func(*parleyv1.Message)) (Appended, error) {
	conv := m.Conversation
	st := s.acquire(conv)
	defer s.release(st)
	st.mu.Lock()
	defer st.mu.Unlock()

	subj := subject.Store(conv)
	var res Appended
	for try := 0; try < maxAppendTries; try++ {
		if !st.loaded {
			seq, sseq, err := s.last(ctx, conv)
			if err != nil {
				return res, err
			}
			st.seq, st.streamSeq, st.loaded = seq, sseq, true
			st.seen.Store(seq)
		}
		m.Seq, m.Id = st.seq+1, 0
		data, err := proto.Marshal(&internalv1.StoredMessage{Message: m})
		if err != nil {
			return res, err
		}
		ack, err := s.publishAppend(ctx, subj, data, msgID, subject.StreamMessages, st.streamSeq)
		if isWrongLastSeq(err) {
			// Another replica appended first: reload the tail and retry.
			// After a few losses in a row, wait a little (jittered) so two
			// replicas in lockstep fall out of step.
			st.loaded = false
			res.Conflicts++
			if try >= 2 {
				if err := sleep(ctx, time.Duration(rand.Int64N(int64(time.Millisecond)*int64(try)))); err != nil {
					return res, err
				}
			}
			continue
		}
		if err != nil {
			// Unknown outcome (timeout, connection lost): the message may
			// be stored. Reload before the next append; a retry with the
			// same msgID is de-duplicated.
			st.loaded = false
			return res, fmt.Errorf("publish: %w", err)
		}
		if ack.Duplicate {
			orig, err := s.Get(ctx, ack.Seq)
			if err != nil {
				return res, fmt.Errorf("duplicate's original (stream seq %d): %w", ack.Seq, err)
			}
			res.Message, res.Duplicate = orig, true
			return res, nil
		}
		st.seq, st.streamSeq = m.Seq, ack.Seq
		st.seen.Store(m.Seq)
		m.Id = ack.Seq
		res.Message = m
		if onStored != nil {
			onStored(m)
		}
		if m.Seq%IndexEvery == 0 {
			// Best effort: a missing entry only makes reads scan longer.
			key := indexKey(conv, m.Seq/IndexEvery)
			if _, err := s.index.Put(ctx, key, []byte(strconv.FormatUint(ack.Seq, 10))); err != nil {
				s.log.Warn("history index write failed", "key", key, "err", err)
			}
		}
		return res, nil
	}
	return res, ErrBusy
}

func indexKey(conv string, n uint64) string { return conv + "." + strconv.FormatUint(n, 10) }

// isWrongLastSeq reports the server's "wrong last sequence" answer to a
// conditional publish: 10071, or 10164 from replicated streams.
func isWrongLastSeq(err error) bool {
	if err == nil {
		return false
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
