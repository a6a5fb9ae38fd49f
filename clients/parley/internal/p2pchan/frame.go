package p2pchan

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// Limits of §20.6.
const (
	MaxFrameSize = 1 << 20  // a DirectFrame's protobuf bytes
	MaxTextBytes = 16 << 10 // DirectChat.text, UTF-8 bytes
	MaxIDChars   = 64       // DirectChat.id, DirectFileOffer.transfer_id
	maxClient    = 128      // DirectHello.client (bytes)
	maxMediaType = 255      // DirectFileOffer.media_type (bytes)
	maxFileSize  = 1 << 50  // a sanity bound on DirectFileOffer.size
)

// ReadFrame reads one DirectFrame: a 4-byte big-endian length and that many
// bytes of protobuf, at most MaxFrameSize (§20.6). A longer length is
// ErrFrameTooLarge, read no further. io.EOF means the stream ended cleanly
// between frames; io.ErrUnexpectedEOF that it ended inside one.
func ReadFrame(r io.Reader) (*parleyv1.DirectFrame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrameSize {
		return nil, fmt.Errorf("%w (%d bytes)", ErrFrameTooLarge, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	f := new(parleyv1.DirectFrame)
	if err := proto.Unmarshal(b, f); err != nil {
		return nil, violation("undecodable frame: %v", err)
	}
	return f, nil
}

// AppendFrame appends f with its length prefix to b.
func AppendFrame(b []byte, f *parleyv1.DirectFrame) ([]byte, error) {
	n := proto.Size(f)
	if n > MaxFrameSize {
		return b, fmt.Errorf("%w (%d bytes)", ErrFrameTooLarge, n)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	return proto.MarshalOptions{}.MarshalAppend(b, f)
}

// WriteFrame writes f with its length prefix in one Write.
func WriteFrame(w io.Writer, f *parleyv1.DirectFrame) error {
	b, err := AppendFrame(nil, f)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// checkID: an id (DirectChat.id, DirectFileOffer.transfer_id, call ids)
// is 1-64 printable characters (§20.6): unicode.IsPrint (letters, marks,
// numbers, punctuation, symbols and the ASCII space), as a message's
// client_key (§15), not starting or ending with a space.
func checkID(what, id string) error {
	if id == "" || !utf8.ValidString(id) || utf8.RuneCountInString(id) > MaxIDChars ||
		strings.HasPrefix(id, " ") || strings.HasSuffix(id, " ") {
		return fmt.Errorf("%s must be 1 to %d printable characters", what, MaxIDChars)
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%s must be 1 to %d printable characters", what, MaxIDChars)
		}
	}
	return nil
}

func checkText(text string) error {
	if len(text) > MaxTextBytes {
		return fmt.Errorf("text is %d bytes, at most %d", len(text), MaxTextBytes)
	}
	if !utf8.ValidString(text) {
		return fmt.Errorf("text is not UTF-8")
	}
	return nil
}

// checkLabel: a short free-form string (client name, media type): UTF-8,
// at most max bytes, no control characters.
func checkLabel(what, s string, max int) error {
	if len(s) > max || !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return fmt.Errorf("%s must be at most %d bytes of printable UTF-8", what, max)
	}
	return nil
}

func checkHello(h *parleyv1.DirectHello, wantDevice string) error {
	if h.GetDeviceId() != wantDevice {
		return violation("hello from device %q, the peer's key is device %s", h.GetDeviceId(), wantDevice)
	}
	if err := checkLabel("hello client", h.GetClient(), maxClient); err != nil {
		return violation("%v", err)
	}
	return nil
}

func checkChat(m *parleyv1.DirectChat) error {
	if err := checkID("chat id", m.GetId()); err != nil {
		return violation("%v", err)
	}
	if err := checkText(m.GetText()); err != nil {
		return violation("chat %q: %v", m.GetId(), err)
	}
	return nil
}

func checkOffer(o *parleyv1.DirectFileOffer) error {
	if err := checkID("transfer_id", o.GetTransferId()); err != nil {
		return violation("%v", err)
	}
	switch {
	case len(o.GetSha256()) != 32:
		return violation("file offer: sha256 is %d bytes, want 32", len(o.GetSha256()))
	case o.GetSize() > maxFileSize:
		return violation("file offer: size %d", o.GetSize())
	case len(o.GetName()) > 4096 || !utf8.ValidString(o.GetName()):
		return violation("file offer: the name is not a UTF-8 file name")
	}
	if err := checkLabel("media type", o.GetMediaType(), maxMediaType); err != nil {
		return violation("file offer: %v", err)
	}
	return nil
}

func checkCall(c *parleyv1.DirectCall) error {
	if err := checkID("call_id", c.GetCallId()); err != nil {
		return violation("%v", err)
	}
	return nil
}

// kind names a frame's body for errors: "hello", "chat", ...
func kind(f *parleyv1.DirectFrame) string {
	switch f.GetBody().(type) {
	case *parleyv1.DirectFrame_Hello:
		return "hello"
	case *parleyv1.DirectFrame_Chat:
		return "chat"
	case *parleyv1.DirectFrame_ChatAck:
		return "chat_ack"
	case *parleyv1.DirectFrame_FileOffer:
		return "file_offer"
	case *parleyv1.DirectFrame_FileAnswer:
		return "file_answer"
	case *parleyv1.DirectFrame_FileDone:
		return "file_done"
	case *parleyv1.DirectFrame_Call:
		return "call"
	}
	return "an unknown frame"
}
