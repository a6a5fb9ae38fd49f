package files

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/fileurl"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// download serves a file's bytes, whole or one Range, to a user the file
// service allows: by the URL's download token (FileDownload) or the session
// token (Authorization: Bearer). The response streams from storage.
func (h *Handler) download(c *fiber.Ctx) error {
	h.tusHeaders(c)
	id := c.Params("id")
	req := &internalv1.FileOpenRequest{FileId: id, Token: c.Query(fileurl.TokenParam)}
	var hdr nats.Header
	if req.Token == "" {
		var err error
		if _, hdr, err = h.identity(c); err != nil {
			return h.failErr(c, err)
		}
	}
	var open internalv1.FileOpenReply
	if err := h.call(c.UserContext(), subject.FileOpen, hdr, req, &open); err != nil {
		return h.failErr(c, err)
	}
	f := open.GetFile()
	live := f.GetState() == parleyv1.FileState_FILE_STATE_UPLOADING && open.GetLivePrefix() != ""
	if f.GetState() != parleyv1.FileState_FILE_STATE_AVAILABLE && !live {
		c.Set(fiber.HeaderRetryAfter, "2")
		return h.fail(c, http.StatusConflict, fmt.Sprintf("the file is still uploading (%d of %d bytes); try again when it is available", f.GetUploaded(), f.GetSize()))
	}
	size := int64(f.GetSize())
	start, length, partial, err := parseRange(c.Get(fiber.HeaderRange), size)
	if err != nil {
		c.Set(fiber.HeaderContentRange, "bytes */"+strconv.FormatInt(size, 10))
		return h.fail(c, http.StatusRequestedRangeNotSatisfiable, err.Error())
	}
	c.Set(fiber.HeaderAcceptRanges, "bytes")
	c.Set(fiber.HeaderContentType, servedType(f.GetContentType()))
	c.Set(fiber.HeaderContentSecurityPolicy, downloadCSP)
	c.Set(fiber.HeaderContentDisposition, contentDisposition(f.GetName()))
	c.Set(fiber.HeaderETag, `"`+f.GetSha256()+`"`)
	c.Set("X-Parley-Sha256", f.GetSha256())
	c.Set(fiber.HeaderCacheControl, "private, no-store")
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		c.Set(fiber.HeaderContentRange, fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, size))
	}
	if c.Method() == fiber.MethodHead {
		// The GET's headers, Content-Length included, and no body
		// (SendStatus would set the status text as the body and its
		// length, 2, as Content-Length).
		c.Status(status)
		c.Context().Response.Header.SetContentLength(int(length))
		return nil
	}
	var r io.ReadCloser
	if live {
		// The body follows the upload: served from the parts stored so
		// far, waiting for more (docs/protocol.md §18.4).
		r = h.newLiveReader(id, req, hdr, &open, start, length)
		c.Set("X-Parley-Live", "1")
		// The headers go at once, not with the first 4 KiB of body
		// (fasthttp's write buffer): the client learns the download
		// started, and the bytes stored so far follow them as they are
		// read, however few (reqbody's connection writes what it reads).
		c.Context().Response.ImmediateHeaderFlush = true
	} else {
		var err error
		if r, err = h.o.Storage.Get(c.UserContext(), open.GetKey(), start, length); err != nil {
			if errors.Is(err, objstore.ErrNotFound) {
				return h.fail(c, http.StatusNotFound, "the file's bytes are gone (expired?)")
			}
			if errors.Is(err, objstore.ErrUnavailable) {
				return h.storageDown(c)
			}
			return h.fail(c, http.StatusServiceUnavailable, "file storage: "+err.Error())
		}
	}
	c.Status(status)
	// fasthttp closes the stream when the body is sent (or the client
	// left). Its write deadline covers the whole response, so each read
	// moves it on: a download may take as long as it keeps moving.
	conn := c.Context().Conn()
	c.Context().SetBodyStream(&deadlineReader{ReadCloser: r, refresh: func() {
		_ = conn.SetWriteDeadline(time.Now().Add(h.o.IdleTimeout))
	}}, int(length))
	return nil
}

// downloadCSP sandboxes a download a browser opens anyway (a link opened
// in a tab despite Content-Disposition: attachment): no scripts, no
// plugins, nothing loaded, a unique origin.
const downloadCSP = "default-src 'none'; sandbox"

// servedType is the Content-Type a download is served with: the file's
// own when it is a passive one a browser shows as it is — a raster image
// (PNG, JPEG, GIF, WebP, AVIF, BMP, HEIC/HEIF, TIFF), audio, video, plain
// text or CSV — and application/octet-stream for everything else, above
// all what a browser would run or render as active content: HTML, XHTML,
// SVG, any XML (XSLT), JavaScript, CSS, PDF. Uploaders name the type; this
// keeps a file from acting on the gateway's origin (docs/protocol.md
// §18.4).
func servedType(ct string) string {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return octetStream
	}
	switch main, sub, _ := strings.Cut(mt, "/"); {
	case main == "audio" || main == "video":
		if strings.HasSuffix(sub, "+xml") {
			return octetStream
		}
		return mt
	case passiveTypes[mt]:
		if cs := params["charset"]; cs != "" && main == "text" {
			return mime.FormatMediaType(mt, map[string]string{"charset": cs})
		}
		return mt
	}
	return octetStream
}

const octetStream = "application/octet-stream"

var passiveTypes = map[string]bool{
	"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true, "image/avif": true,
	"image/bmp": true, "image/heic": true, "image/heif": true, "image/tiff": true,
	"text/plain": true, "text/csv": true, octetStream: true,
}

// deadlineReader calls refresh before and after each read (a live read
// may wait for the uploader).
type deadlineReader struct {
	io.ReadCloser
	refresh func()
}

func (r *deadlineReader) Read(p []byte) (int, error) {
	r.refresh()
	n, err := r.ReadCloser.Read(p)
	r.refresh()
	return n, err
}
