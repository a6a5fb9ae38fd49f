// Package reqbody keeps what is left of a request body from being read as
// further requests on the same HTTP/1.1 connection.
//
// fasthttp streaming request bodies (Server.StreamRequestBody) reads a
// body only as far as the handler reads it; whatever the handler left is
// still in the connection when the next request is parsed, so a body sent
// to a handler that answered early (a PATCH refused with 401 before it
// was read) is served as requests of its own: request smuggling
// (valyala/fasthttp#2368, unfixed in the version used). fasthttp's own
// chunked reader also reads past a body's end if asked once more after
// it returned io.EOF: the next request's first line is taken for a chunk
// size.
//
// Guard runs around every route. Handlers read request bodies only
// through Of, which stops at the body's end (Content-Length, or the last
// chunk) and remembers it. After the handler, Guard looks at the body:
// read to its end, nothing to do; otherwise it discards the rest if that
// is small and arrives quickly (at most DiscardLimit bytes within
// DiscardWait, as net/http does with its 256 KiB), and if not, answers
// with Connection: close, so nothing after the answer is parsed. A
// connection that is closed while the client is still sending would be
// reset, and the reset can destroy the answer before the client reads it:
// Listener makes such a connection close gently (half-close, then
// discard for a moment before the full close, as net/http does).
// A request framed both ways (Transfer-Encoding and Content-Length) is
// answered with Connection: close too (RFC 9112 §6.1), and one with
// folded header lines is refused (400) and the connection closed: fasthttp
// unfolds them in its read buffer and loses its place in the stream. Hijacked requests
// (WebSocket upgrades) are left alone.
package reqbody

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// What Guard discards of an unread body before it gives up and closes the
// connection instead.
const (
	DiscardLimit = 256 << 10
	DiscardWait  = time.Second
)

// What a gentle close (Listener) discards after the half-close, at most,
// before closing fully.
const (
	lingerWait  = 500 * time.Millisecond
	lingerLimit = 4 << 20
)

// Body is a request's body as handlers read it: it ends at the body's end
// and never reads past it.
type Body struct {
	r      io.Reader // fasthttp's body stream; nil: no body
	length int       // Content-Length, or -1: chunked
	read   int
	eof    bool  // the body was read to its end
	err    error // a read failed (the body is broken): sticky
}

// Read reads the body; after its end it returns io.EOF without touching
// the connection.
func (b *Body) Read(p []byte) (int, error) {
	switch {
	case b.eof:
		return 0, io.EOF
	case b.err != nil:
		return 0, b.err
	case b.r == nil:
		b.eof = true
		return 0, io.EOF
	}
	if b.length >= 0 && len(p) > b.length-b.read {
		p = p[:b.length-b.read]
	}
	n, err := b.r.Read(p)
	b.read += n
	switch {
	case errors.Is(err, io.EOF):
		if b.length >= 0 && b.read < b.length {
			// fasthttp's stream reports a connection that ended
			// mid-body as a short body.
			b.err = io.ErrUnexpectedEOF
			return n, b.err
		}
		b.eof = true
		return n, io.EOF
	case err != nil:
		b.err = err
		return n, err
	case b.length >= 0 && b.read == b.length:
		b.eof = true
	}
	return n, nil
}

// Done reports whether the body was read to its end (or there was none).
func (b *Body) Done() bool { return b.eof || b.r == nil }

type key struct{}

// Of returns the body of c's request. Handlers must read bodies through it
// only (never fasthttp's RequestBodyStream, nor c.Body()).
func Of(c *fiber.Ctx) *Body {
	if b, ok := c.Locals(key{}).(*Body); ok {
		return b
	}
	b := newBody(c.Context())
	c.Locals(key{}, b)
	return b
}

func newBody(ctx *fasthttp.RequestCtx) *Body {
	b := &Body{length: ctx.Request.Header.ContentLength()}
	// -2 is a request without Content-Length or Transfer-Encoding: no
	// body (RFC 9112 §6.3), and fasthttp reads none.
	if b.length > 0 || b.length == -1 {
		b.r = ctx.RequestBodyStream()
	}
	return b
}

// Guard is middleware for every route of an app that streams request
// bodies: after the handler it discards what the handler left of the
// body, or makes the answer close the connection (see the package
// comment). Install it before any route.
func Guard(c *fiber.Ctx) error {
	b := Of(c)
	ctx := c.Context()
	if folded(ctx.Request.Header.RawHeaders()) {
		// fasthttp unfolds in its read buffer and then skips as many
		// bytes as the shorter headers take: the difference is read
		// again as the start of the next request. Refuse (RFC 9112
		// §5.2 allows it) and parse nothing more on this connection.
		ctx.SetConnectionClose()
		lingerOnClose(ctx.Conn())
		return fiber.NewError(fiber.StatusBadRequest, "obsolete line folding in the request headers")
	}
	twice := framedTwice(&ctx.Request.Header)
	err := c.Next()
	if ctx.Hijacked() {
		return err
	}
	if twice {
		// RFC 9112 §6.1: a request with both Transfer-Encoding and
		// Content-Length (fasthttp follows the chunks) may have been
		// framed differently by an intermediary; close after answering.
		ctx.SetConnectionClose()
	}
	if b.Done() {
		return err
	}
	if !discard(ctx, b) {
		ctx.SetConnectionClose()
		lingerOnClose(ctx.Conn())
	}
	return err
}

// folded reports whether raw (a request's header lines) has a line folded
// onto the previous one (obs-fold: starting with a space or a tab).
func folded(raw []byte) bool {
	for line := range bytes.SplitSeq(raw, []byte("\n")) {
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			return true
		}
	}
	return false
}

// framedTwice reports a chunked request whose raw headers also carry a
// Content-Length (fasthttp drops it from the parsed ones).
func framedTwice(h *fasthttp.RequestHeader) bool {
	if h.ContentLength() != -1 {
		return false
	}
	for line := range bytes.SplitSeq(h.RawHeaders(), []byte("\n")) {
		name, _, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte(fasthttp.HeaderContentLength)) {
			return true
		}
	}
	return false
}

// discard reads the rest of b if it is at most DiscardLimit bytes and
// arrives within DiscardWait, and reports whether it did.
func discard(ctx *fasthttp.RequestCtx, b *Body) bool {
	switch {
	case b.err != nil, ctx.Response.ConnectionClose():
		return false // broken, or closing anyway
	case b.length >= 0 && b.length-b.read > DiscardLimit:
		return false // too much for certain: do not wait for it
	}
	conn := ctx.Conn()
	_ = conn.SetReadDeadline(time.Now().Add(DiscardWait))
	_, err := io.CopyN(io.Discard, b, DiscardLimit+1)
	// fasthttp sets the deadline for the next request itself.
	return errors.Is(err, io.EOF) && b.Done()
}

// Listener returns ln whose connections close gently when Guard closes
// them with part of a body unread: the connection is half-closed (the
// answer, then FIN, reach the client), the client's further bytes are
// discarded for a moment (lingerWait, lingerLimit) so it can read the
// answer, and only then is it closed, which may reset it. Wrap the raw
// TCP listener (under TLS, not over it).
func Listener(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c}, nil
}

// conn is an accepted connection that may be marked to close gently.
type conn struct {
	net.Conn
	linger atomic.Bool
}

// ReadFrom keeps the connection's own (a TCP connection writes what it
// reads at once): fasthttp's buffered writer hands streamed response bodies
// to it, and without it would hold back the last partial buffer of a body
// that pauses (a live download waiting for its uploader).
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// NetConn is the accepted connection itself: a hijacked connection
// (a WebSocket) is served from it directly.
func (c *conn) NetConn() net.Conn { return c.Conn }

func (c *conn) Close() error {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !c.linger.Load() || !ok {
		return c.Conn.Close()
	}
	// On fasthttp's goroutine for the connection: it is done with it.
	if cw.CloseWrite() == nil {
		_ = c.Conn.SetReadDeadline(time.Now().Add(lingerWait))
		_, _ = io.CopyN(io.Discard, c.Conn, lingerLimit)
	}
	return c.Conn.Close()
}

// lingerOnClose marks the connection under nc (nc itself, or under TLS
// the connection the TLS one runs on) to close gently.
func lingerOnClose(nc net.Conn) {
	// *conn is asked first: it has a NetConn too (the socket under it, for
	// a WebSocket), and unwrapping it would lose the mark.
	c, ok := nc.(*conn)
	if tc, isTLS := nc.(interface{ NetConn() net.Conn }); !ok && isTLS {
		c, ok = tc.NetConn().(*conn)
	}
	if ok {
		c.linger.Store(true)
	}
}
