// Package parley is the Go client SDK for Parley (docs/protocol.md): it
// connects to a gateway over TCP, TLS or WebSocket, registers, logs in and
// resumes sessions, asks who is online, follows presence as it changes, and
// chats: the public room and private conversations (Send, SendTo, History,
// Ack, Conversations, OpenDirect).
//
// A Client keeps itself connected: it answers and sends heartbeats, and after
// a network break or a gateway restart it redials with jittered exponential
// backoff (never sooner than a refusal's retry_after_ms asks), redoes the
// handshake and resumes its session with the token of the last Session, so the application keeps the same user and session. Requests
// made while it reconnects wait for it (bounded by their context); requests
// that were in flight when the connection broke fail with an error matching
// ErrConnectionLost, since the server may or may not have acted on them.
//
// Server errors come back as *Error with a stable Code; compare them with
// errors.Is against the sentinels (ErrBadCredentials, ErrUsernameTaken, ...).
// Retryable tells the errors worth retrying.
//
// The API speaks in the SDK's own types (Message, Conversation, FileInfo,
// Code, Welcome, ...), converted from the protocol's frames as they are
// read and written: an application needs no protobuf import, and the
// schema can grow without breaking it.
//
// Presence arrives on Events as typed events, and Online always returns the
// client's current view of the online list: the latest snapshot with the
// changes that came after it.
//
// Messages arrive on Events as MessageEvent, per conversation in seq order,
// each exactly once and with no gaps, across reconnects: the client keeps
// how far it has delivered each conversation, drops repeats, reads gaps
// from history before going on, and after every login, resume and
// reconnect lists the conversations and reads what it missed (offline
// messages), then reports SyncedEvent. Send retries a request cut by a
// break with the same client key, so a message is stored once.
package parley
