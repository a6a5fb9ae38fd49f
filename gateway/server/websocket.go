package server

import (
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"net"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/parleychat/parley/gateway/internal/transport"
)

// The WebSocket upgrade (RFC 6455 §4.2). The gateway answers it itself and
// takes the connection over from the HTTP server (Server.KeepHijackedConns):
// the hijack handler returns at once, so fasthttp releases the request's
// context and its 4 KiB read buffer, and the connection is served by
// transport.WebSocket, which holds no buffer while idle. A websocket
// library served the connection inside the hijack handler instead, keeping
// all of that (and its own buffers) alive for the connection's life.

// wsGUID is the GUID of RFC 6455 §1.3 that Sec-WebSocket-Accept hashes.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// wsAccept is Sec-WebSocket-Accept for a Sec-WebSocket-Key (§4.2.2 item 5.4).
func wsAccept(key []byte) string {
	h := sha1.New()
	h.Write(key)
	h.Write([]byte(wsGUID))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// isWebSocketUpgrade reports whether the request asks for a WebSocket:
// Connection names the upgrade token and Upgrade names websocket.
func isWebSocketUpgrade(c *fiber.Ctx) bool {
	h := &c.Context().Request.Header
	return headerHasToken(h.Peek(fiber.HeaderConnection), "upgrade") &&
		headerHasToken(h.Peek(fiber.HeaderUpgrade), "websocket")
}

// headerHasToken reports whether a comma-separated header value lists
// token (ASCII case-insensitive).
func headerHasToken(v []byte, token string) bool {
	for _, t := range strings.Split(string(v), ",") {
		if strings.EqualFold(strings.Trim(t, " \t"), token) {
			return true
		}
	}
	return false
}

// upgradeWebSocket answers a WebSocket upgrade at WebSocketPath with 101
// and hands the connection to the gateway; anything else there is told to
// upgrade (426), with the version the gateway speaks when that was the
// fault (§4.4). No subprotocol and no extension is negotiated (the
// protocol needs none, docs/protocol.md §3), and any origin is accepted:
// a connection is worth nothing before its client logs in.
func (s *Server) upgradeWebSocket(c *fiber.Ctx) error {
	h := &c.Context().Request.Header
	if !c.Context().IsGet() || !isWebSocketUpgrade(c) {
		return fiber.ErrUpgradeRequired
	}
	if !headerHasToken(h.Peek("Sec-WebSocket-Version"), "13") {
		c.Set("Sec-WebSocket-Version", "13")
		return fiber.ErrUpgradeRequired
	}
	key := h.Peek("Sec-WebSocket-Key")
	if len(key) == 0 {
		return fiber.ErrUpgradeRequired
	}
	u := transport.Upgrade{
		Host:   string(c.Context().Host()),
		Remote: s.clientAddr(c),
		Scheme: s.httpScheme(c),
	}
	c.Status(fiber.StatusSwitchingProtocols)
	c.Set(fiber.HeaderUpgrade, "websocket")
	c.Set(fiber.HeaderConnection, "Upgrade")
	c.Set("Sec-WebSocket-Accept", wsAccept(key))
	maxFrame := uint32(s.cfg.MaxFrameSize)
	// fasthttp writes the 101, then runs this on a goroutine of its own.
	c.Context().Hijack(func(hc net.Conn) {
		nc, buffered, ok := takeOver(hc)
		u.Buffered = buffered
		t := transport.NewWebSocket(nc, maxFrame, u)
		if !ok {
			// Reads go through fasthttp's buffer, which it takes back
			// when this returns: serve here (holding it, as a websocket
			// library did).
			s.handler.Serve(t)
			return
		}
		go s.serveWebSocket(t)
	})
	return nil
}

// serveWebSocket is the reader goroutine of one WebSocket; like
// serveStream it keeps its frame tiny (it stays on every idle connection's
// stack).
func (s *Server) serveWebSocket(t *transport.WebSocket) { s.handler.Serve(t) }

// takeOver returns the connection under fasthttp's hijacked one, and what
// fasthttp had already read of it past the upgrade request (a client may
// send its first frames without waiting for the 101). fasthttp returns its
// read buffer to its pool when the hijack handler returns, so those bytes
// are copied out now: a read with a deadline already past returns what the
// buffer holds without waiting, and nothing from the socket.
//
// ok is false if fasthttp did not give the connection away (a version
// without UnsafeConn): hc itself is returned, to be served before the
// hijack handler returns.
func takeOver(hc net.Conn) (nc net.Conn, buffered []byte, ok bool) {
	u, ok := hc.(interface{ UnsafeConn() net.Conn })
	if !ok {
		return hc, nil, false
	}
	nc = u.UnsafeConn()
	_ = nc.SetReadDeadline(time.Unix(1, 0))
	var scratch [512]byte
	for {
		n, err := hc.Read(scratch[:])
		buffered = append(buffered, scratch[:n]...)
		if err != nil || n == 0 {
			break
		}
	}
	_ = nc.SetReadDeadline(time.Time{})
	// Under plain HTTP the connection is reqbody's (gentle closing of
	// half-read bodies, which a WebSocket never has): the TCP connection
	// under it gives TryWrite its socket and Close its half-close.
	if u, ok := nc.(interface{ NetConn() net.Conn }); ok {
		if _, isTLS := nc.(*tls.Conn); !isTLS {
			nc = u.NetConn()
		}
	}
	return nc, buffered, true
}
