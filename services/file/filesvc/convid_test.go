package filesvc

import (
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// TestListConversationIDs: a file list names its conversation with the
// grammar of docs/protocol.md §15.1 and gets the answers messaging gives
// for that id (§15.1, §18.2). The file service used to accept any
// dot-separated id whose tokens included the caller as a private chat of
// theirs: "dm.ub.ua" (not in ascending order), "dm.ua.ua" and
// "dm.ua.ub.uc" were listed (empty) where messaging answers NOT_FOUND or
// INVALID_ARGUMENT; they now get messaging's answers.
func TestListConversationIDs(t *testing.T) {
	nc := testenv.Connect(t, testenv.NATS(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: subject.BucketFiles})
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{nc: nc, kv: kv, cfg: Config{RequestTimeout: 2 * time.Second}, log: slog.New(slog.DiscardHandler),
		now: time.Now}
	// A file in the private chat of ua and ub, indexed as the offer does.
	const fileID = "f0123456789abcdef01234567"
	rec := &internalv1.FileRecord{Info: &parleyv1.FileInfo{FileId: fileID, Name: "a.txt", Size: 1, SenderId: "ub",
		Conversation: "dm.ua.ub", State: parleyv1.FileState_FILE_STATE_AVAILABLE, CreatedAtUnixMs: 1}}
	if err := s.create(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	s.index(t.Context(), convIndexKey("dm.ua.ub", fileID))
	// Messaging's answer for group membership: ua is in group.gin only.
	members, err := nc.Subscribe(subject.MsgMembers, func(m *nats.Msg) {
		var req parleyv1.MembersRequest
		_ = proto.Unmarshal(m.Data, &req)
		who, err := identity.Read(m.Header)
		switch {
		case err != nil:
			_ = rpc.RespondError(m, errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "log in first"))
		case req.Conversation == "group.gin" && who.UserID == "ua":
			_ = rpc.Respond(m, &parleyv1.MembersReply{})
		case req.Conversation == "group.gin":
			_ = rpc.RespondError(m, errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "not a member"))
		default:
			_ = rpc.RespondError(m, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such group"))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer members.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	const (
		ok         = parleyv1.ErrorCode_ERROR_CODE_UNSPECIFIED
		notFound   = parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND
		denied     = parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED
		invalidArg = parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT
	)
	for _, tc := range []struct {
		name, conv, user string
		want             parleyv1.ErrorCode
		files            int
	}{
		{"own private chat", "dm.ua.ub", "ua", ok, 1},
		{"own private chat, the other member", "dm.ua.ub", "ub", ok, 1},
		{"others' private chat", "dm.ua.ub", "uc", denied, 0},
		{"own group", "group.gin", "ua", ok, 0},
		{"a group one is not in", "group.gin", "ub", denied, 0},
		{"a group that does not exist", "group.gout", "ua", notFound, 0},
		{"the public room", "room.public", "ua", notFound, 0},
		// Used to be listed (empty): now messaging's answers.
		{"private chat not in ascending order", "dm.ub.ua", "ua", notFound, 0},
		{"private chat with oneself", "dm.ua.ua", "ua", invalidArg, 0},
		{"private chat of three", "dm.ua.ub.uc", "ua", notFound, 0},
		// Others' chats are theirs however written.
		{"others' chat not in order", "dm.ub.ua", "uc", denied, 0},
		// §18.2: not shaped like a conversation id.
		{"not an id", "dm..ua", "ua", invalidArg, 0},
		{"wildcard", "dm.ua.>", "ua", invalidArg, 0},
		{"five tokens", "a.b.c.d.e", "ua", invalidArg, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := proto.Marshal(&parleyv1.FilesRequest{Conversation: tc.conv})
			m := &nats.Msg{Subject: subject.FileList, Data: body,
				Header: identity.Caller{UserID: tc.user, SessionID: "s-" + tc.user, Username: tc.user}.Header()}
			reply, err := s.handleList(t.Context(), m)
			code := ok
			if err != nil {
				code = errcode.Code(err)
			}
			if code != tc.want {
				t.Fatalf("list %q as %s: %v (%v), want %v", tc.conv, tc.user, code, err, tc.want)
			}
			if err == nil {
				if got := len(reply.(*parleyv1.FilesReply).GetFiles()); got != tc.files {
					t.Errorf("list %q as %s: %d files, want %d", tc.conv, tc.user, got, tc.files)
				}
			}
		})
	}
}

// TestNoIdentity: a request without the gateway's identity headers, or
// with headers the gateway never writes, is UNAUTHENTICATED.
func TestNoIdentity(t *testing.T) {
	s := &Service{log: slog.New(slog.DiscardHandler), now: time.Now}
	body, _ := proto.Marshal(&parleyv1.FilesRequest{})
	for name, hdr := range map[string]nats.Header{
		"none":           nil,
		"wildcard user":  {subject.HeaderUserID: {">"}},
		"session only":   {subject.HeaderSessionID: {"s1"}},
		"dotted session": {subject.HeaderUserID: {"u1"}, subject.HeaderSessionID: {"s.1"}},
	} {
		if _, err := s.handleList(t.Context(), &nats.Msg{Data: body, Header: hdr}); errcode.Code(err) != parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED {
			t.Errorf("%s: %v, want UNAUTHENTICATED", name, err)
		}
	}
}
