package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pubAck is the stream's answer to a stored publish.
type pubAck struct {
	Seq       uint64 // the message's stream sequence (the original's for a duplicate)
	Duplicate bool   // the id was stored before, within the duplicate window
}

// publishAppend publishes data to the stream's subject subj with
// de-duplication id msgID, on condition that the last message stored on
// subj has stream sequence lastSeq (0: none). It does what
// jetstream.PublishMsg does with WithMsgID, WithExpectStream and
// WithExpectLastSequencePerSubject (the same headers, retries on no
// responders, errors: a refusal is a *jetstream.APIError), without the
// options' and encoding/json's cost on every append: the stream's usual
// answers are parsed by hand (parsePubAck), which took ~8% of messaging's
// CPU per direct message.
func (s *Store) publishAppend(ctx context.Context, subj string, data []byte, msgID, stream string, lastSeq uint64) (pubAck, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.js.Options().DefaultTimeout)
		defer cancel()
	}
	m := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{
		jetstream.MsgIDHeader:               {msgID},
		jetstream.ExpectedStreamHeader:      {stream},
		jetstream.ExpectedLastSubjSeqHeader: {strconv.FormatUint(lastSeq, 10)},
	}}
	resp, err := s.appends.RequestMsgWithContext(ctx, m)
	// No responders: a leader election in progress; jetstream's retries.
	for r := 0; errors.Is(err, nats.ErrNoResponders) && r < jetstream.DefaultPubRetryAttempts; r++ {
		t := time.NewTimer(jetstream.DefaultPubRetryWait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		resp, err = s.appends.RequestMsgWithContext(ctx, m)
	}
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return pubAck{}, jetstream.ErrNoStreamResponse
	case err != nil:
		return pubAck{}, err
	}
	return parsePubAck(resp.Data, stream)
}

// parsePubAck decodes the stream's answer to a publish. The forms the
// server writes for a stored or duplicate message of stream
// ({"stream":"S","seq":N} and {"stream":"S","seq":N,"duplicate": true})
// are read directly; anything else (an error, a domain, other fields) goes
// through encoding/json, as jetstream.PublishMsg reads it.
func parsePubAck(data []byte, stream string) (pubAck, error) {
	if a, ok := quickPubAck(data, stream); ok {
		return a, nil
	}
	var r struct {
		Error     *jetstream.APIError `json:"error"`
		Stream    string              `json:"stream"`
		Seq       uint64              `json:"seq"`
		Duplicate bool                `json:"duplicate"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return pubAck{}, jetstream.ErrInvalidJSAck
	}
	if r.Error != nil {
		return pubAck{}, fmt.Errorf("nats: %w", r.Error)
	}
	if r.Stream == "" {
		return pubAck{}, jetstream.ErrInvalidJSAck
	}
	return pubAck{Seq: r.Seq, Duplicate: r.Duplicate}, nil
}

// quickPubAck reads the two answers nats-server writes for a stored
// message of stream without a domain; ok is false for any other input.
func quickPubAck(data []byte, stream string) (a pubAck, ok bool) {
	const head, seqKey = `{"stream":"`, `","seq":`
	rest, found := bytes.CutPrefix(data, []byte(head))
	if !found || len(rest) < len(stream) || string(rest[:len(stream)]) != stream {
		return a, false
	}
	rest, found = bytes.CutPrefix(rest[len(stream):], []byte(seqKey))
	if !found {
		return a, false
	}
	n := 0
	for n < len(rest) && n < 20 && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 || (n > 1 && rest[0] == '0') {
		return a, false
	}
	seq, err := strconv.ParseUint(string(rest[:n]), 10, 64)
	if err != nil {
		return a, false
	}
	switch string(rest[n:]) {
	case `}`:
		return pubAck{Seq: seq}, true
	case `,"duplicate": true}`, `,"duplicate":true}`:
		return pubAck{Seq: seq, Duplicate: true}, true
	}
	return a, false
}
