// Package conn is the gateway's per-connection protocol logic: the
// handshake, requests before and after a session, relaying events,
// bad-input handling and the bounded outbound queue. It is
// transport-agnostic: TCP, TLS and WebSocket connections all come in as a
// transport.Transport. This comment is the summary docs/protocol.md is
// written from; the functions named hold the details.
//
// # Admission (Handler.open, limits.go)
//
// Before anything is read, a connection is counted under the caps
// (gateway/internal/connlimit): -max-conns in total, -max-conns-per-addr
// and -max-unauth-conns-per-addr per source address (IPv4 address or IPv6
// /64; -conn-limit-exempt sources are not limited per address). Over a
// cap its first and only frame is a fatal Error with request_id 0:
// UNAVAILABLE (total), RATE_LIMITED with retry_after_ms 5-10 s (per
// address) or 1-2 s (without a session per address); then it closes. A
// connection counts as without a session until startSession and again
// after logout. Until a session starts, and after logout, frames above
// -max-prelogin-frame-size (16 KiB) are a fatal FRAME_TOO_LARGE; with a
// session the limit is -max-frame-size.
//
// # Handshake (hello, readLoop)
//
// The first frame must arrive within -handshake-timeout (default 10s) and be
// a Hello whose versions include 1. The gateway answers Welcome with the
// Hello's request_id (version 1, server "parley-gateway/<version>",
// gateway_id, max_frame_size, heartbeat_interval_ms, idle_timeout_ms,
// http_url from Options.HTTPURL: where this connection's client transfers
// files, see gateway/server's httpURL; and stun_addr, -stun-addr: the
// rendezvous's primary address).
// Before Welcome every failure is fatal (an Error with fatal=true, then the
// close): no frame in time or a first frame other than Hello ->
// HANDSHAKE_REQUIRED (request_id 0); no common version ->
// UNSUPPORTED_VERSION with the Hello's request_id and a message listing the
// versions the server speaks; undecodable bytes -> their decode code
// (FRAME_TOO_LARGE, BAD_FRAME, INVALID_UTF8) with the frame's request_id
// where it can be read (see Bad input).
//
// # After Welcome (dispatch)
//
// Frames are handled one at a time in arrival order, so replies come in
// request order (a slow request, a long history read say, delays the next).
// Ping -> Pong (same request_id and nonce) at any time; Pong is ignored;
// another Hello -> HANDSHAKE_REQUIRED (non-fatal); a body only servers send
// (Welcome, Error, Session, Ok, WhoReply, SendReply, HistoryReply,
// ConversationsReply, Conversation, PresenceSnapshot, PresenceChange,
// SessionEnded, MessageEvent, ...), or a body member the schema does not
// know (a later version's request: wire.ErrUnknownBody; not a bad frame)
// -> UNKNOWN_REQUEST. Requests need a non-zero
// request_id, else INVALID_ARGUMENT with request_id 0. Without a session
// every request but Register, Login and Resume -> UNAUTHENTICATED; with
// one, Register/Login/Resume -> ALREADY_AUTHENTICATED. Errors from the
// services keep their code, message and retry_after_ms; a service that
// does not answer -> UNAVAILABLE (no responders) or TIMEOUT
// (-request-timeout); a request too large for one NATS message (the
// server's max_payload) is not sent: MESSAGE_TOO_LARGE for a send,
// INVALID_ARGUMENT for others (bus.go).
//
// Which requests exist, which need a session, where each goes and what
// it is answered with is one table, routes (routes.go); docs/protocol.md
// §4 lists the same (TestRoutesMatchProtocol). The requests go to their
// service unchanged, with who asks in NATS headers built from the session
// (Parley-User, Parley-Session, Parley-Username, Parley-Remote-Addr,
// Parley-Gateway, Parley-Conn); nothing in a client's frame sets them.
// Register, Login and Resume go to auth with the address, gateway and
// connection headers only; Logout sends a fresh empty body; Who goes to
// presence as a PresenceListRequest (the Feed). Typing -> Ok: messaging
// checks and rate-limits it and publishes the TypingEvent; the gateway
// keeps no typing state.
//
// A session starts with PresenceConnect, the per-user subscription, the
// Session reply and then (unless options.skip_presence_feed) the presence
// feed: PresenceSnapshot frames of at most 500 users, read from presence
// page by page (each user once, all frames with the first page's seq, the
// last with last=true), then PresenceChange events with a higher seq, in
// order. Message events start with the session too, never before the
// Session reply (see below). If presence cannot list, a non-fatal Error
// (request_id 0, UNAVAILABLE or TIMEOUT) replaces the snapshot (or ends
// it, without last=true, when a later page fails). Who passes the client's
// cursor and limit to presence and answers one page with its next_cursor.
// Logout revokes the session and answers Ok; the connection stays open
// without a session. A SessionKick from auth sends SessionEnded{reason,
// message} (request_id 0) to every connection here holding its session,
// except the one it names (except_gateway_id, except_conn_id: the
// connection whose logout or resume caused it), and closes them. Every
// request to a service names this connection (Parley-Conn header) besides
// the gateway, and with a session the user, session and username.
//
// # Message events (registry.Registry, Deliver)
//
// Every authenticated connection receives MessageEvent frames (request_id
// 0): those the messaging service publishes on its user's subject
// (subject.UserMessages: direct messages, to each of that user's
// connections on this gateway, through the per-user subscription) and
// those of the rooms (subject.RoomMessagesAll: one subscription per
// gateway, every authenticated connection). Each event is encoded once and
// the same bytes queued on every connection; queueing never waits. Events
// of rooms and groups are sheddable: a client that does not keep up is
// shed for (see Outbound queue), not closed; a private message event is
// queued like a presence event. Delivery is at most once: a client that
// sees a gap in a conversation's seq reads the missing messages with
// history (and after every login syncs from history: the per-user
// subscription is requested before the Session reply but NATS may register
// it just after). None reaches a connection after its Logout was answered
// (room events still queued for it are dropped).
//
// # Calls (calls.go, gateway/internal/callmedia)
//
// place_call, join_call, reject_call, leave_call and mute_call go to the
// media-relay with the identity headers. On its CallJoined for a place or
// join, the participant's stream (stream id, key, call, this connection)
// is installed in the media plane, replacing one the connection had, and
// the reply gets udp_addr (-public-udp-addr, or derived like http_url,
// with the media port's port; "" without a media port). A successful
// leave_call, a logout and the connection's end drop its stream. A media
// frame (a sealed packet) is no request: it goes to the media plane with
// the connection as its return path and is never answered, whatever
// happens to it (drops are counted in parley_gateway_media_drops_total).
// Media frames to the client are queued only while the send queue is at
// most half full, and dropped otherwise: never SLOW_CONSUMER for media.
// CallEvents published on the user's subject arrive as call_event.
//
// # Direct sessions (p2p.go, gateway/internal/p2prelay)
//
// register_device and device_keys go to auth, p2p_open, p2p_answer,
// p2p_update and p2p_close to the rendezvous, with the identity headers.
// A P2PSession reply that is not CLOSED attaches the session's side
// (reply.side) to this connection: the connection subscribes
// subject.P2PRelay(session, side) and gets what arrives there as
// p2p_relay frames (request_id 0), queued only while the send queue is at
// most half full, like media. A CLOSED reply detaches it; so do the
// p2p_close's Ok (or NOT_FOUND), a P2PEvent{CLOSED} for the session
// reaching the connection (detached before the event is queued), a logout
// and the connection's end. A connection holds at most 8 sessions: a
// p2p_open (or an answer or update about a session it does not hold)
// beyond them is QUOTA_EXCEEDED without reaching the rendezvous. A
// p2p_relay frame from the client is no request: its packet goes to
// subject.P2PRelay(session, other side) if the session is attached here,
// it is 1-1500 bytes and the connection's allowance (-p2p-relay-rate
// bytes a second, -p2p-relay-burst at once) covers it; otherwise it is
// dropped (parley_gateway_p2p_relay_drops_total), never answered. With
// -p2p-relay-rate 0 nothing is attached or relayed. P2PEvents published
// on the user's subject arrive as p2p_event.
//
// # Bad input (readError, badFrame)
//
// An undecodable frame gets an Error with the decode code and the frame's
// request_id as far as wire.RequestID can read it from the bytes (0 when it
// cannot: garbage from the first byte, a zero length, a WebSocket text
// message). INVALID_UTF8 means a string field at any depth is not UTF-8
// (wire.Decode checks the bytes against the schema, not the runtime's
// error text). BAD_FRAME (also: zero length, no body, a text message) and
// INVALID_UTF8 are non-fatal; the 11th undecodable frame on a connection is
// answered with a fatal BAD_FRAME. FRAME_TOO_LARGE (length prefix or
// WebSocket message above max_frame_size) and a frame cut short by the end
// of the stream (BAD_FRAME) are fatal: the stream cannot be trusted.
//
// # Timeouts and closing
//
// A connection has a context (Conn.ctx) that ends when the connection
// does: when a final frame is queued or a write fails (it is closing),
// when the client is seen gone, and when it has closed. Every request sent
// to a service for it, and its presence snapshot, derive from it, so none
// outlives its client: a request still waiting for its service is
// abandoned and nothing is sent for it. The reader learns that the client
// has gone while a frame is handled by waiting for the next frame to begin
// (Transport.Wait, which consumes nothing); a client that closes (or
// half-closes: the two look the same) gets no reply to what it had
// pending. The per-user subscription and the feed membership are removed
// when the connection ends (finish).
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
// -send-queue-bytes bytes not yet written to its socket. Message events of
// rooms and groups are sheddable: past half of either limit the ones still
// waiting are dropped (the newest kept), never the connection; the client
// repairs the gap from history. Everything else goes out before them and
// is never shed; a client that lets those overflow the queue is closed
// with a fatal SLOW_CONSUMER (sent only if its socket still has room), and
// so is one whose socket takes nothing (less than 64 KiB) for
// -write-timeout (then without the frame). Queueing events and replies
// never waits for a client. The exceptions are the connection's own
// snapshot (and the presence changes buffered while it was sent) and the
// replies that may be large (sendWait: WhoReply, HistoryReply,
// ConversationsReply, MembersReply, FriendsReply, FilesReply): its frame
// goroutine waits for room for them (shedding room events first), at most
// -write-timeout, after which the client is closed as a slow consumer.
// Message events never wait, not even during a snapshot.
//
// # Cost of a connection
//
// One reader goroutine (the caller of Handler.Serve), which runs each
// frame's handling on a short-lived goroutine and waits for it (and for
// the next frame to begin), and a flush
// goroutine that exists only while frames are queued. No buffer is held
// while idle, and a frame that arrives slowly holds at most about twice
// what arrived (wire.Reader grows its buffer with the bytes, whatever the
// length prefix announced). An idle connection therefore costs one small parked
// goroutine stack plus a few hundred bytes of state. Message delivery adds
// nothing per connection: the room subscription is one per gateway, the
// per-user one exists already for kicks.
package conn
