package parley

import (
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// TestFileFromWire: every field of the protocol's FileInfo reaches the
// SDK's, times as time.Time and enums as the SDK's.
func TestFileFromWire(t *testing.T) {
	created, expires := time.UnixMilli(1_700_000_000_123), time.UnixMilli(1_700_086_400_456)
	wire := &parleyv1.FileInfo{FileId: "f1", Name: "plan.png", Size: 2048, ContentType: "image/png", Sha256: "ab12",
		SenderId: "u1", SenderName: "alice", Conversation: "dm.u1.u2", CreatedAtUnixMs: created.UnixMilli(),
		ExpiresAtUnixMs: expires.UnixMilli(), State: parleyv1.FileState_FILE_STATE_UPLOADING, Uploaded: 1024,
		Answer: parleyv1.FileAnswer_FILE_ANSWER_ACCEPTED, Thumbnail: []byte{0xff, 0xd8}}
	want := &FileInfo{ID: "f1", Name: "plan.png", Size: 2048, ContentType: "image/png", SHA256: "ab12",
		SenderID: "u1", SenderName: "alice", Conversation: "dm.u1.u2", CreatedAt: created, ExpiresAt: expires,
		State: FileStateUploading, Uploaded: 1024, Answer: FileAnswerAccepted, Thumbnail: []byte{0xff, 0xd8}}
	if got := fileFromWire(wire); !reflect.DeepEqual(got, want) {
		t.Errorf("fileFromWire = %+v\nwant %+v", got, want)
	}
	// Every wire field has been set above: a new one must be converted too.
	if n, set := wire.ProtoReflect().Descriptor().Fields().Len(), countSet(wire); n != set {
		t.Errorf("the test sets %d of FileInfo's %d fields", set, n)
	}

	if got := fileFromWire(&parleyv1.FileInfo{}); !reflect.DeepEqual(got, &FileInfo{}) {
		t.Errorf("an empty FileInfo = %+v: unset times must stay zero", got)
	}
	if fileFromWire(nil) != nil || messageFromWire(&parleyv1.Message{Text: "hi"}).File != nil {
		t.Error("no file on the wire must be no file in the SDK (a plain message)")
	}
	// The file of an offer, a download or an event is never nil.
	if fileOfferFromWire(&parleyv1.FileOffer{}).File == nil || fileDownloadFromWire(&parleyv1.FileDownload{}).File == nil ||
		fileEventFromWire(&parleyv1.FileEvent{}).File == nil {
		t.Error("a missing file must become an empty FileInfo")
	}

	offer := fileOfferFromWire(&parleyv1.FileOffer{File: wire, UploadPath: "/v1/files/f1", PartSize: 8 << 20, Duplicate: true})
	if !reflect.DeepEqual(offer, &FileOffer{File: want, UploadPath: "/v1/files/f1", PartSize: 8 << 20, Duplicate: true}) {
		t.Errorf("fileOfferFromWire = %+v", offer)
	}
	dl := fileDownloadFromWire(&parleyv1.FileDownload{File: wire, Path: "/v1/files/f1/content?token=t", ExpiresAtUnixMs: expires.UnixMilli()})
	if !reflect.DeepEqual(dl, &FileDownload{File: want, Path: "/v1/files/f1/content?token=t", ExpiresAt: expires}) {
		t.Errorf("fileDownloadFromWire = %+v", dl)
	}
}

// countSet counts the fields of m that are set.
func countSet(m proto.Message) int {
	n := 0
	fields := m.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		if m.ProtoReflect().Has(fields.Get(i)) {
			n++
		}
	}
	return n
}

// TestFileEnums: FileState and FileAnswer keep the protocol's numbers
// (parley file ls --json prints them) and name every protocol value.
func TestFileEnums(t *testing.T) {
	states := []struct {
		sdk  FileState
		wire parleyv1.FileState
		name string
	}{
		{FileStateUnknown, parleyv1.FileState_FILE_STATE_UNSPECIFIED, "unknown"},
		{FileStateUploading, parleyv1.FileState_FILE_STATE_UPLOADING, "uploading"},
		{FileStateAvailable, parleyv1.FileState_FILE_STATE_AVAILABLE, "available"},
		{FileStateFailed, parleyv1.FileState_FILE_STATE_FAILED, "failed"},
		{FileStateExpired, parleyv1.FileState_FILE_STATE_EXPIRED, "expired"},
	}
	if len(states) != len(parleyv1.FileState_name) {
		t.Errorf("%d file states here, %d in the protocol", len(states), len(parleyv1.FileState_name))
	}
	for _, s := range states {
		got := fileFromWire(&parleyv1.FileInfo{State: s.wire}).State
		if got != s.sdk || int(s.sdk) != int(s.wire) || s.sdk.String() != s.name {
			t.Errorf("%v: converted to %d (%v), constant %d (%v); want %d (%s)", s.wire, got, got, s.sdk, s.sdk, s.wire, s.name)
		}
	}
	answers := []struct {
		sdk  FileAnswer
		wire parleyv1.FileAnswer
		name string
	}{
		{FileAnswerNone, parleyv1.FileAnswer_FILE_ANSWER_UNSPECIFIED, "none"},
		{FileAnswerAccepted, parleyv1.FileAnswer_FILE_ANSWER_ACCEPTED, "accepted"},
		{FileAnswerRejected, parleyv1.FileAnswer_FILE_ANSWER_REJECTED, "rejected"},
	}
	if len(answers) != len(parleyv1.FileAnswer_name) {
		t.Errorf("%d file answers here, %d in the protocol", len(answers), len(parleyv1.FileAnswer_name))
	}
	for _, a := range answers {
		got := fileFromWire(&parleyv1.FileInfo{Answer: a.wire}).Answer
		if got != a.sdk || int(a.sdk) != int(a.wire) || a.sdk.String() != a.name {
			t.Errorf("%v: converted to %d (%v), constant %d (%v); want %d (%s)", a.wire, got, got, a.sdk, a.sdk, a.wire, a.name)
		}
	}
	// A state or answer from a newer server is unknown, not misread.
	if f := fileFromWire(&parleyv1.FileInfo{State: 99, Answer: 99}); f.State != FileStateUnknown || f.Answer != FileAnswerNone {
		t.Errorf("unknown numbers became %v, %v", f.State, f.Answer)
	}
}

func TestWelcomeFromWire(t *testing.T) {
	wire := &parleyv1.Welcome{Version: 1, Server: "parley/1.2", GatewayId: "gw-1", MaxFrameSize: 1 << 20,
		HeartbeatIntervalMs: 15000, IdleTimeoutMs: 45000, HttpUrl: "https://chat.example.com:7480", StunAddr: "chat.example.com:3478"}
	if n, set := wire.ProtoReflect().Descriptor().Fields().Len(), countSet(wire); n != set {
		t.Errorf("the test sets %d of Welcome's %d fields", set, n)
	}
	got := welcomeFromWire(wire)
	want := Welcome{Version: 1, Server: "parley/1.2", GatewayID: "gw-1", MaxFrameSize: 1 << 20,
		HeartbeatInterval: 15 * time.Second, IdleTimeout: 45 * time.Second, HTTPURL: "https://chat.example.com:7480", STUNAddr: "chat.example.com:3478"}
	if got != want {
		t.Errorf("welcomeFromWire = %+v, want %+v", got, want)
	}
}
