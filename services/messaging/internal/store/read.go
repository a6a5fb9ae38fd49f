package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// decode turns a stored payload into its message; the id is the stream
// sequence, which the payload cannot hold (it is assigned on append).
func decode(data []byte, streamSeq uint64) (*parleyv1.Message, error) {
	var sm internalv1.StoredMessage
	if err := proto.Unmarshal(data, &sm); err != nil || sm.Message == nil {
		return nil, fmt.Errorf("stream seq %d: %w", streamSeq, ErrCorrupt)
	}
	sm.Message.Id = streamSeq
	return sm.Message, nil
}

// last reads the conversation's newest message from the stream: its seq and
// stream sequence, 0/0 for an empty conversation.
func (s *Store) last(ctx context.Context, conv string) (seq, streamSeq uint64, err error) {
	raw, err := s.stream.GetLastMsgForSubject(ctx, subject.Store(conv))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("last message of %s: %w", conv, err)
	}
	m, err := decode(raw.Data, raw.Sequence)
	if err != nil {
		return 0, 0, err
	}
	return m.Seq, raw.Sequence, nil
}

// LastSeq is the conversation's newest seq as stored now (0: no messages).
func (s *Store) LastSeq(ctx context.Context, conv string) (uint64, error) {
	seq, _, err := s.last(ctx, conv)
	return seq, err
}

// AtLeast reports whether the conversation has reached seq, asking the
// stream only when this replica's cache does not already know it.
func (s *Store) AtLeast(ctx context.Context, conv string, seq uint64) (bool, error) {
	if s.cachedSeq(conv) >= seq {
		return true, nil
	}
	last, err := s.LastSeq(ctx, conv)
	return last >= seq, err
}

// Get returns the message with stream sequence streamSeq.
func (s *Store) Get(ctx context.Context, streamSeq uint64) (*parleyv1.Message, error) {
	raw, err := s.stream.GetMsg(ctx, streamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return decode(raw.Data, raw.Sequence)
}

// Range returns the conversation's messages with after < seq <= upTo, at
// most limit, in seq order.
func (s *Store) Range(ctx context.Context, conv string, after, upTo uint64, limit int) ([]*parleyv1.Message, error) {
	if upTo <= after || limit <= 0 {
		return nil, nil
	}
	from, err := s.startFor(ctx, conv, after+1)
	if err != nil {
		return nil, err
	}
	want := min(uint64(limit), upTo-after)
	out := make([]*parleyv1.Message, 0, want)
	for uint64(len(out)) < want {
		// Ask for what is still missing plus what may lie between the
		// index entry and after (at most IndexEvery-1, or more when an
		// entry is missing: then the loop takes another batch).
		batch := int(want-uint64(len(out))) + IndexEvery
		msgs, next, err := s.readBatch(ctx, conv, from, batch)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Seq <= after {
				continue
			}
			if m.Seq > upTo || uint64(len(out)) == want {
				return out, nil
			}
			out = append(out, m)
		}
		if len(msgs) < batch {
			break // end of the conversation
		}
		from = next
	}
	return out, nil
}

// startFor is a stream sequence at or before the message with seq, taken
// from the index: entry seq/IndexEvery, or an earlier one if missing, or 1.
func (s *Store) startFor(ctx context.Context, conv string, seq uint64) (uint64, error) {
	k := seq / IndexEvery
	for tries := 0; k > 0 && tries < 4; k, tries = k-1, tries+1 {
		e, err := s.index.Get(ctx, indexKey(conv, k))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("history index: %w", err)
		}
		v, err := strconv.ParseUint(string(e.Value()), 10, 64)
		if err != nil || v == 0 {
			continue
		}
		return v, nil
	}
	return 1, nil
}

// directGetRequest is the body of a JetStream direct get (server
// JSApiMsgGetRequest): with batch, the server streams up to batch messages
// on next_by_subj at or after seq to the reply subject, then an "EOB"
// status message (204); 404 when there is none at all.
type directGetRequest struct {
	Seq        uint64 `json:"seq"`
	NextBySubj string `json:"next_by_subj"`
	Batch      int    `json:"batch"`
}

// Header keys nats.go sets from a status line ("NATS/1.0 204 EOB").
const (
	statusHeader      = "Status"
	descriptionHeader = "Description"
)

// readBatch reads up to n messages of conv at or after stream sequence
// from, with one batched direct get. next is the stream sequence after the
// last one returned.
func (s *Store) readBatch(ctx context.Context, conv string, from uint64, n int) (msgs []*parleyv1.Message, next uint64, err error) {
	body, err := json.Marshal(directGetRequest{Seq: from, NextBySubj: subject.Store(conv), Batch: n})
	if err != nil {
		return nil, 0, err
	}
	inbox := s.nc.NewRespInbox()
	// The server answers with at most n messages and an end-of-batch
	// status: a channel of n+1 holds the whole answer, so none is dropped.
	// (SubscribeSync would allocate its default 64k-entry channel, 512 KiB,
	// for every read: a busy room's catch-ups made that messaging's main
	// garbage.)
	ch := make(chan *nats.Msg, n+1)
	sub, err := s.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, -1)
	if err := s.nc.PublishRequest("$JS.API.DIRECT.GET."+subject.StreamMessages, inbox, body); err != nil {
		return nil, 0, err
	}
	next = from
	for {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("history read: %w", ctx.Err())
		}
		if status := m.Header.Get(statusHeader); status != "" {
			switch status {
			case "204": // end of batch
				return msgs, next, nil
			case "404": // nothing at or after from
				return msgs, next, nil
			case "503":
				return nil, 0, nats.ErrNoResponders
			default:
				return nil, 0, fmt.Errorf("history read: status %s %s", status, m.Header.Get(descriptionHeader))
			}
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("history read: bad %s header", jetstream.SequenceHeader)
		}
		msg, err := decode(m.Data, seq)
		if err != nil {
			return nil, 0, err
		}
		msgs = append(msgs, msg)
		next = seq + 1
	}
}
