package msgsvc

import (
	"context"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Limits on a posted file's description.
const (
	maxFileIDChars  = 64
	maxFileNameByte = 255
	// maxFileInfoBytes bounds the encoded FileInfo (a thumbnail included),
	// so a file message (name <= 255 bytes as text) always fits the
	// stream's per-message limit of MaxMessageBytes + 4 KiB.
	maxFileInfoBytes = MaxMessageBytes
)

// Wire errors of MsgPostFile.
var (
	errNoFile       = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "file is required")
	errFileID       = errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "file_id must be 1 to %d characters", maxFileIDChars)
	errFileName     = errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "a file name is 1 to %d bytes of UTF-8 text, not only white space", maxFileNameByte)
	errFileSize     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "file size must be more than zero bytes")
	errFileInfoSize = errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "the file description is too large (at most %d KiB encoded)", maxFileInfoBytes>>10)
	errFileInRoom   = errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "files can be offered in private chats and groups only, not in the public room")
)

// handlePostFile posts a file offer as a message (subject.MsgPostFile). Only
// the file service calls it, after accepting an OfferFileRequest; the
// identity headers name the sender exactly as for handleSend (trust comes
// from the subject: clients cannot reach NATS).
//
// The target is resolved exactly as for a send (to_username: the direct
// conversation, BLOCKED if that user blocked the sender, INVALID_ARGUMENT
// for yourself; conversation: a direct conversation of the sender's or a
// group the sender is a member of). The public room is refused with
// PERMISSION_DENIED: files go to users and groups, never to everyone.
//
// The file must have a file_id (1-64 characters), a name (1-255 bytes of
// UTF-8, not only white space) and a size above zero, and encode to at
// most 16 KiB. The message is stored like a text message, through the same
// path as handleSend (idempotent on "<sender id>:<client_key>", delivered
// live to both members / every group member, a direct conversation listed
// for both users), with text = the file's name and file = the FileInfo with
// conversation, sender_id and sender_name overwritten from the resolved
// conversation and the headers (whatever the body said). A re-post with
// the same client_key returns the original message; the key used before
// for another file or message is INVALID_ARGUMENT.
//
// Reply: PostFileReply with the stored message, the conversation kind, and
// member_ids: both users of a direct conversation, or the group's members
// as checked for this post (sender included), for the file service's
// download permissions.
func (s *Service) handlePostFile(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req internalv1.PostFileRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	if err := checkClientKey(req.ClientKey); err != nil {
		return nil, err
	}
	if err := checkFile(req.File); err != nil {
		return nil, err
	}
	t, err := s.target(ctx, me, req.Conversation, req.ToUsername)
	if err != nil {
		return nil, err
	}
	if t.kind == parleyv1.ConversationKind_CONVERSATION_KIND_ROOM {
		return nil, errFileInRoom
	}
	file := req.File
	file.Conversation, file.SenderId, file.SenderName = t.id, me.id, me.name
	stored, dup, err := s.post(ctx, me, t, &parleyv1.Message{Text: file.Name, File: file, ClientKey: req.ClientKey})
	if err != nil {
		return nil, err
	}
	if !dup {
		s.metrics.files.WithLabelValues(kindLabel(t.kind)).Inc()
	}
	reply := &internalv1.PostFileReply{Message: stored, Kind: t.kind}
	if t.kind == parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT {
		reply.MemberIds = []string{me.id, t.peer}
	} else {
		reply.MemberIds = t.members
	}
	return reply, nil
}

// checkFile applies the rules on a posted file's description (see
// handlePostFile).
func checkFile(f *parleyv1.FileInfo) error {
	switch {
	case f == nil:
		return errNoFile
	case f.FileId == "" || utf8.RuneCountInString(f.FileId) > maxFileIDChars:
		return errFileID
	case len(f.Name) > maxFileNameByte || !utf8.ValidString(f.Name) ||
		strings.TrimFunc(f.Name, unicode.IsSpace) == "":
		return errFileName
	case f.Size == 0:
		return errFileSize
	case proto.Size(f) > maxFileInfoBytes:
		return errFileInfoSize
	}
	return nil
}
