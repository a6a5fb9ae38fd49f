// Package conn is the gateway's per-connection protocol logic: the
// handshake, requests before and after a session, relaying events,
// bad-input handling and the bounded outbound queue. It is
// transport-agnostic: TCP, TLS and WebSocket connections all come in as a
// transport.Transport. This comment is the summary docs/protocol.md is
// written from; the functions named hold the details.
//
// # Handshake (hello, readLoop)
//
// The first frame must arrive within -handshake-timeout (default 10s) and be
// a Hello whose versions include 1. The gateway answers Welcome with the
// Hello's request_id (version 1, server "parley-gateway/<version>",
// gateway_id, max_frame_size, heartbeat_interval_ms, idle_timeout_ms).
// Before Welcome every failure is fatal (an Error with fatal=true, then the
// close): no frame in time or a first frame other than Hello ->
// HANDSHAKE_REQUIRED (request_id 0); no common version ->
// UNSUPPORTED_VERSION with the Hello's request_id and a message listing the
// versions the server speaks; undecodable bytes -> their decode code
// (FRAME_TOO_LARGE, BAD_FRAME, INVALID_UTF8).
//
// # After Welcome (dispatch)
//
// Frames are handled one at a time in arrival order, so replies come in
// request order. Ping -> Pong (same request_id and nonce) at any time; Pong
// is ignored; another Hello -> HANDSHAKE_REQUIRED (non-fatal); a body only
// servers send (Welcome, Error, Session, Ok, WhoReply, PresenceSnapshot,
// PresenceChange, SessionEnded) -> UNKNOWN_REQUEST. Requests (Register,
// Login, Resume, Logout, Who) need a non-zero request_id, else
// INVALID_ARGUMENT with request_id 0. Without a session, Logout and Who ->
// UNAUTHENTICATED; with one, Register/Login/Resume -> ALREADY_AUTHENTICATED.
// Errors from the services keep their code, message and retry_after_ms.
//
// A session starts with PresenceConnect, the per-user subscription, the
// Session reply and then (unless options.skip_presence_feed) the presence
// feed: PresenceSnapshot frames of at most 500 users, read from presence
// page by page (each user once, all frames with the first page's seq, the
// last with last=true), then PresenceChange events with a higher seq, in
// order. If presence cannot list, a non-fatal Error (request_id 0,
// UNAVAILABLE or TIMEOUT) replaces the snapshot (or ends it, without
// last=true, when a later page fails). Who passes the client's cursor and
// limit to presence and answers one page with its next_cursor. Logout
// revokes the session and answers Ok; the connection stays open without a
// session. A SessionKick from auth sends SessionEnded{reason, message}
// (request_id 0) and closes.
//
// # Bad input (readError, badFrame)
//
// An undecodable frame gets an Error with request_id 0 and the decode code.
// BAD_FRAME (also: zero length, no body, a WebSocket text message) and
// INVALID_UTF8 are non-fatal; the 11th undecodable frame on a connection is
// answered with a fatal BAD_FRAME. FRAME_TOO_LARGE (length prefix or
// WebSocket message above max_frame_size) and a frame cut short by the end
// of the stream (BAD_FRAME) are fatal: the stream cannot be trusted.
//
// # Timeouts and closing
//
// After Welcome a connection that sends nothing for -idle-timeout gets a
// fatal IDLE_TIMEOUT; any frame resets the timer, so clients Ping every
// heartbeat_interval_ms. After a fatal Error or SessionEnded the gateway
// half-closes, discards what the client still sends for up to a second so
// the last frame is not lost to a TCP reset, and closes. On shutdown every
// connection gets a fatal SERVER_SHUTDOWN (request_id 0).
//
// # Outbound queue (outbox)
//
// Each connection queues at most -send-queue-frames frames and
// -send-queue-bytes bytes not yet written to its socket. A client that
// lets it overflow is closed with a fatal SLOW_CONSUMER (sent only if its
// socket still has room); queueing events and replies never waits for a
// client. The exceptions are the connection's own snapshot (and the events
// buffered while it was sent) and Who replies: its frame goroutine waits
// for room for them, at most -write-timeout, after which the client is
// closed as a slow consumer.
//
// # Cost of a connection
//
// One reader goroutine (the caller of Handler.Serve), which runs each
// frame's handling on a short-lived goroutine and waits for it, and a flush
// goroutine that exists only while frames are queued. No buffer is held
// while idle. An idle connection therefore costs one small parked
// goroutine stack plus a few hundred bytes of state.
package conn
