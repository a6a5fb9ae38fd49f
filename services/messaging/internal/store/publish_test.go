package store

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/libs/subject"
)

func TestParsePubAck(t *testing.T) {
	const st = "MESSAGES"
	for _, tc := range []struct {
		name    string
		in      string
		want    pubAck
		quick   bool
		wantErr error // jetstream.ErrInvalidJSAck, or nil; API errors are checked below
		apiCode jetstream.ErrorCode
	}{
		{name: "stored", in: `{"stream":"MESSAGES","seq":42}`, want: pubAck{Seq: 42}, quick: true},
		{name: "duplicate", in: `{"stream":"MESSAGES","seq":7,"duplicate": true}`, want: pubAck{Seq: 7, Duplicate: true}, quick: true},
		{name: "duplicate without space", in: `{"stream":"MESSAGES","seq":7,"duplicate":true}`, want: pubAck{Seq: 7, Duplicate: true}, quick: true},
		{name: "largest seq", in: `{"stream":"MESSAGES","seq":18446744073709551615}`, want: pubAck{Seq: 1<<64 - 1}, quick: true},
		{name: "domain", in: `{"stream":"MESSAGES","domain":"hub","seq":9}`, want: pubAck{Seq: 9}},
		{name: "spaced", in: `{"stream": "MESSAGES", "seq": 9}`, want: pubAck{Seq: 9}},
		{name: "other stream name is still an answer", in: `{"stream":"OTHER","seq":3}`, want: pubAck{Seq: 3}},
		{name: "wrong last sequence", in: `{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"}}`, apiCode: 10071},
		{name: "error with stream", in: `{"stream":"MESSAGES","error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`, apiCode: 10077},
		{name: "no stream", in: `{"seq":3}`, wantErr: jetstream.ErrInvalidJSAck},
		{name: "not json", in: `+OK`, wantErr: jetstream.ErrInvalidJSAck},
		{name: "empty", in: ``, wantErr: jetstream.ErrInvalidJSAck},
		{name: "seq overflows", in: `{"stream":"MESSAGES","seq":18446744073709551616}`, wantErr: jetstream.ErrInvalidJSAck},
		{name: "truncated", in: `{"stream":"MESSAGES","seq":42`, wantErr: jetstream.ErrInvalidJSAck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, quick := quickPubAck([]byte(tc.in), st)
			if quick != tc.quick {
				t.Errorf("quick path taken: %v, want %v", quick, tc.quick)
			}
			got, err := parsePubAck([]byte(tc.in), st)
			switch {
			case tc.apiCode != 0:
				var apiErr *jetstream.APIError
				if !errors.As(err, &apiErr) || apiErr.ErrorCode != tc.apiCode {
					t.Fatalf("err = %v, want API error %d", err, tc.apiCode)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("err = %v", err)
			case got != tc.want:
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzQuickPubAck: whatever the hand-written path accepts, encoding/json
// reads the same way.
func FuzzQuickPubAck(f *testing.F) {
	for _, s := range []string{
		`{"stream":"S","seq":1}`, `{"stream":"S","seq":12,"duplicate": true}`, `{"stream":"S","seq":0}`,
		`{"stream":"S","seq":01}`, `{"stream":"S\"","seq":1}`, `{"error":{"code":400}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, ok := quickPubAck(data, "S")
		if !ok {
			return
		}
		var r struct {
			Stream    string `json:"stream"`
			Seq       uint64 `json:"seq"`
			Duplicate bool   `json:"duplicate"`
		}
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatalf("quick path accepted %q, encoding/json refuses it: %v", data, err)
		}
		if r.Stream != "S" || r.Seq != a.Seq || r.Duplicate != a.Duplicate {
			t.Fatalf("quick path read %q as %+v, encoding/json as %+v", data, a, r)
		}
	})
}

// TestPublishAppendRealAnswers: against a real JetStream, publishAppend's
// stored, duplicate and conflicting appends come back as jetstream.PublishMsg
// reports them, and the server's success answers take the quick path (a
// change in their wording would only cost speed, and fails here).
func TestPublishAppendRealAnswers(t *testing.T) {
	s := openReplicas(t, 1, false)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	subj := subject.Store("dm.aaaa.bbbb")

	// The raw answers, as the server words them.
	raw := func(id string, last uint64) []byte {
		t.Helper()
		m := &nats.Msg{Subject: subj, Data: []byte("x"), Header: nats.Header{
			jetstream.MsgIDHeader:               {id},
			jetstream.ExpectedStreamHeader:      {subject.StreamMessages},
			jetstream.ExpectedLastSubjSeqHeader: {strconv.FormatUint(last, 10)},
		}}
		resp, err := s.nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Data
	}
	first := raw("raw-1", 0)
	a, ok := quickPubAck(first, subject.StreamMessages)
	if !ok || a.Duplicate || a.Seq == 0 {
		t.Fatalf("server's stored answer %q: quick path %v, %+v", first, ok, a)
	}
	dup := raw("raw-1", a.Seq)
	d, ok := quickPubAck(dup, subject.StreamMessages)
	if !ok || !d.Duplicate || d.Seq != a.Seq {
		t.Fatalf("server's duplicate answer %q: quick path %v, %+v (want seq %d, duplicate)", dup, ok, d, a.Seq)
	}

	// publishAppend itself.
	got, err := s.publishAppend(ctx, subj, []byte("y"), "pa-1", subject.StreamMessages, a.Seq)
	if err != nil || got.Duplicate || got.Seq <= a.Seq {
		t.Fatalf("append after seq %d: %+v, %v", a.Seq, got, err)
	}
	again, err := s.publishAppend(ctx, subj, []byte("y"), "pa-1", subject.StreamMessages, got.Seq)
	if err != nil || !again.Duplicate || again.Seq != got.Seq {
		t.Fatalf("re-send of pa-1: %+v, %v (want duplicate of %d)", again, err, got.Seq)
	}
	_, err = s.publishAppend(ctx, subj, []byte("z"), "pa-2", subject.StreamMessages, a.Seq)
	if !isWrongLastSeq(err) {
		t.Fatalf("append on a stale last seq: err = %v, want wrong last sequence", err)
	}
	_, err = s.publishAppend(ctx, subj, []byte("z"), "pa-3", "NOT_THE_STREAM", got.Seq)
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("append expecting another stream: err = %v, want an API error", err)
	}
	_, err = s.publishAppend(ctx, "parley.nowhere.v1.x", []byte("z"), "pa-4", subject.StreamMessages, 0)
	if !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("append to a subject no stream holds: err = %v, want %v", err, jetstream.ErrNoStreamResponse)
	}
}
