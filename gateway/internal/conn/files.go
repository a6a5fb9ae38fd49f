package conn

import (
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// File requests (docs/protocol.md §18) go to the file service; the bytes
// themselves travel over HTTP (gateway/internal/files).

// offerFile forwards an OfferFileRequest; reply FileOffer.
func (c *Conn) offerFile(rid uint32, req proto.Message) {
	reply := new(parleyv1.FileOffer)
	if c.forward(rid, subject.FileOffer, req, reply) {
		c.send(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_FileOffer{FileOffer: reply}})
	}
}

// fileDownload forwards a FileDownloadRequest; reply FileDownload.
func (c *Conn) fileDownload(rid uint32, req proto.Message) {
	reply := new(parleyv1.FileDownload)
	if c.forward(rid, subject.FileDownload, req, reply) {
		c.send(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_FileDownloadReply{FileDownloadReply: reply}})
	}
}

// files forwards a FilesRequest; reply FilesReply (a shelf may be long: it
// waits for room in the send queue).
func (c *Conn) files(rid uint32, req proto.Message) {
	reply := new(parleyv1.FilesReply)
	if c.forward(rid, subject.FileList, req, reply) {
		c.sendWait(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_FilesReply{FilesReply: reply}})
	}
}
