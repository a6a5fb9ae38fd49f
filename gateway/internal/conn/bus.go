package conn

import (
	"context"
	"net/textproto"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Every request a client makes travels to its service as one NATS message,
// and NATS refuses messages above the server's max_payload (1 MiB by
// default, the same as the default -max-frame-size). nats.go reports that
// as ErrMaxPayload, which libs/rpc can only call UNAVAILABLE: retryable,
// and wrong, since the same request fails every time. So the gateway
// checks the size first and answers a clear, final code (docs/protocol.md
// §6): MESSAGE_TOO_LARGE for a send (its text is what is too large),
// INVALID_ARGUMENT for any other request.

// busRequest is rpc.Request after checking that req and hdr fit in one NATS
// message; otherwise it returns an error with code tooLarge.
func (c *Conn) busRequest(ctx context.Context, subj string, hdr nats.Header, req, reply proto.Message, tooLarge parleyv1.ErrorCode) error {
	return c.busRequestSized(ctx, subj, hdr, headerSize(hdr), req, reply, tooLarge)
}

// busRequestSized is busRequest with hdr's encoded size (headerSize) known.
func (c *Conn) busRequestSized(ctx context.Context, subj string, hdr nats.Header, hdrSize int, req, reply proto.Message, tooLarge parleyv1.ErrorCode) error {
	if err := c.checkBusSize(subj, hdrSize, req, tooLarge); err != nil {
		return err
	}
	return rpc.Request(ctx, c.h.Requests, subj, hdr, req, reply)
}

// checkBusSize returns an error with code tooLarge if req with headers of
// hdrSize bytes would not fit in one NATS message.
func (c *Conn) checkBusSize(subj string, hdrSize int, req proto.Message, tooLarge parleyv1.ErrorCode) error {
	limit := c.h.NC.MaxPayload()
	if limit <= 0 {
		return nil // not connected: the request fails as UNAVAILABLE anyway
	}
	size := int64(proto.Size(req) + hdrSize)
	if size <= limit {
		return nil
	}
	c.log().Info("request too large for the message bus", "subject", subj, "bytes", size, "max_payload", limit)
	if tooLarge == parleyv1.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE {
		return errcode.New(tooLarge, "the message is too large")
	}
	return errcode.Newf(tooLarge, "the request is too large (%d bytes; at most %d)", size, limit)
}

// headerSize is the size of hdr as nats.go encodes it ("NATS/1.0\r\n",
// "Key: value\r\n" per value, "\r\n"); nats.go counts it against
// max_payload together with the body.
func headerSize(hdr nats.Header) int {
	if len(hdr) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range hdr {
		for _, v := range vs {
			n += len(k) + len(": ") + len(textproto.TrimString(v)) + len("\r\n")
		}
	}
	return n
}
