// Package subject names every NATS subject, queue group, JetStream bucket and
// header key Parley uses. Services and the gateway build names only through
// this package, so the whole bus is described in one place
// (docs/architecture.md lists the same table).
package subject

// Auth service (request/reply, queue group QueueAuth). Request bodies are the
// client's protobuf request (parleyv1.RegisterRequest, ...); replies are
// internalv1.AuthReply or an error in headers (libs/rpc).
const (
	AuthRegister = "parley.auth.v1.register"
	AuthLogin    = "parley.auth.v1.login"
	AuthResume   = "parley.auth.v1.resume"
	AuthLogout   = "parley.auth.v1.logout"
	// AuthLookup finds a user by name for other services
	// (internalv1.UserLookupRequest -> UserLookupReply).
	AuthLookup = "parley.auth.v1.lookup"
	// AuthVerify checks a session token without refreshing it, for HTTP
	// requests carrying one (internalv1.TokenVerifyRequest -> AuthReply
	// with the session, token empty).
	AuthVerify = "parley.auth.v1.verify"
	// AuthSessionCheck tells whether a session still exists
	// (internalv1.SessionCheckRequest -> empty, or SESSION_REVOKED).
	AuthSessionCheck = "parley.auth.v1.session"
)

// Messaging service (request/reply, queue group QueueMessaging). Request
// bodies are the client's protobuf request; the gateway sets HeaderUserID,
// HeaderSessionID and HeaderUsername from the session, and messaging trusts
// nothing else about the sender.
const (
	MsgSend          = "parley.msg.v1.send"          // parleyv1.SendRequest -> SendReply
	MsgHistory       = "parley.msg.v1.history"       // parleyv1.HistoryRequest -> HistoryReply
	MsgAck           = "parley.msg.v1.ack"           // parleyv1.AckRequest -> empty
	MsgConversations = "parley.msg.v1.conversations" // parleyv1.ConversationsRequest -> ConversationsReply
	MsgOpenDirect    = "parley.msg.v1.opendirect"    // parleyv1.OpenDirectRequest -> Conversation
	// MsgTyping checks a typing indicator (membership, blocks, the
	// typist's rate) and publishes it to the peer's UserTyping
	// (parleyv1.TypingRequest -> empty).
	MsgTyping = "parley.msg.v1.typing"

	// Groups.
	MsgCreateGroup  = "parley.msg.v1.group.create"  // parleyv1.CreateGroupRequest -> Conversation
	MsgInvite       = "parley.msg.v1.group.invite"  // parleyv1.InviteRequest -> MembersReply
	MsgJoinGroup    = "parley.msg.v1.group.join"    // parleyv1.JoinGroupRequest -> Conversation
	MsgLeaveGroup   = "parley.msg.v1.group.leave"   // parleyv1.LeaveGroupRequest -> empty
	MsgRemoveMember = "parley.msg.v1.group.remove"  // parleyv1.RemoveMemberRequest -> empty
	MsgRenameGroup  = "parley.msg.v1.group.rename"  // parleyv1.RenameGroupRequest -> Conversation
	MsgMembers      = "parley.msg.v1.group.members" // parleyv1.MembersRequest -> MembersReply

	// Friends and blocking.
	MsgAddFriend    = "parley.msg.v1.friend.add"     // parleyv1.AddFriendRequest -> empty
	MsgAnswerFriend = "parley.msg.v1.friend.answer"  // parleyv1.AnswerFriendRequest -> empty
	MsgRemoveFriend = "parley.msg.v1.friend.remove"  // parleyv1.RemoveFriendRequest -> empty
	MsgFriends      = "parley.msg.v1.friend.list"    // parleyv1.FriendsRequest -> FriendsReply
	MsgBlock        = "parley.msg.v1.friend.block"   // parleyv1.BlockRequest -> empty
	MsgUnblock      = "parley.msg.v1.friend.unblock" // parleyv1.UnblockRequest -> empty

	// MsgPostFile posts a file offer as a message; only the file service
	// calls it (internalv1.PostFileRequest -> PostFileReply).
	MsgPostFile = "parley.msg.v1.postfile"

	// MsgCallResolve checks that the caller may call in a conversation and
	// names its members; only the media-relay calls it
	// (internalv1.CallResolveRequest -> CallResolveReply).
	MsgCallResolve = "parley.msg.v1.call.resolve"
	// MsgPostCall posts a call's system message; only the media-relay
	// calls it (internalv1.PostCallRequest -> parleyv1.Message).
	MsgPostCall = "parley.msg.v1.call.post"
)

// Media-relay: call signalling from clients (through the gateway, with the
// identity headers; queue group QueueMedia, any replica answers by a
// compare-and-set on the call's record) and the media plane between the
// gateways and the replica that owns a call (libs/mediabus encodes it).
const (
	CallPlace  = "parley.call.v1.place"  // parleyv1.PlaceCallRequest -> CallJoined
	CallJoin   = "parley.call.v1.join"   // parleyv1.JoinCallRequest -> CallJoined
	CallReject = "parley.call.v1.reject" // parleyv1.RejectCallRequest -> empty
	CallLeave  = "parley.call.v1.leave"  // parleyv1.LeaveCallRequest -> empty
	CallMute   = "parley.call.v1.mute"   // parleyv1.MuteCallRequest -> empty

	// MediaRelayAlive carries every relay replica's heartbeat (its id),
	// from which the replicas agree who is alive and take over the calls
	// of one that is not.
	MediaRelayAlive = "parley.media.v1.relay.alive"
)

// MediaUp is where gateways publish a call's opened audio packets and
// their participants' liveness (mediabus); only the call's owner replica
// subscribes.
func MediaUp(callID string) string { return "parley.media.v1.up." + callID }

// MediaDown is where the owner publishes the audio to forward and the
// call's roster (mediabus); every gateway with a participant of the call
// subscribes.
func MediaDown(callID string) string { return "parley.media.v1.down." + callID }

// UserCallEvents carries parleyv1.CallEvent for a user.
func UserCallEvents(userID string) string { return UserPrefix(userID) + "call" }

// Device keys (auth service, queue group QueueAuth): a device registers
// its public key through the gateway; the rendezvous and clients read them.
const (
	AuthDeviceRegister = "parley.auth.v1.device.register" // parleyv1.RegisterDeviceRequest -> DeviceKeysReply (identity headers)
	AuthDeviceKeys     = "parley.auth.v1.device.keys"     // parleyv1.DeviceKeysRequest -> DeviceKeysReply
)

// Rendezvous: direct-session signalling from clients (through the gateway,
// with the identity headers; queue group QueueRendezvous, any replica
// answers by a compare-and-set on the session's record in BucketP2P).
const (
	P2POpen   = "parley.p2p.v1.open"   // parleyv1.P2POpenRequest -> P2PSession
	P2PAnswer = "parley.p2p.v1.answer" // parleyv1.P2PAnswerRequest -> P2PSession
	P2PUpdate = "parley.p2p.v1.update" // parleyv1.P2PUpdateRequest -> P2PSession
	P2PClose  = "parley.p2p.v1.close"  // parleyv1.P2PCloseRequest -> empty
)

// P2PRelay is where the gateway serving side ("a" or "b") of a direct
// session receives the packets the other side relays (raw packet bytes, no
// envelope); the sending side's gateway publishes there.
func P2PRelay(sessionID, side string) string { return "parley.p2p.v1.relay." + sessionID + "." + side }

// UserP2PEvents carries parleyv1.P2PEvent for a user.
func UserP2PEvents(userID string) string { return UserPrefix(userID) + "p2p" }

// File service: offers, answers and downloads from clients (through the
// gateway), and the upload bookkeeping of the gateway's tus endpoint.
const (
	FileOffer    = "parley.file.v1.offer"    // parleyv1.OfferFileRequest -> FileOffer
	FileAnswer   = "parley.file.v1.answer"   // parleyv1.AnswerFileRequest -> empty
	FileDownload = "parley.file.v1.download" // parleyv1.FileDownloadRequest -> FileDownload
	FileList     = "parley.file.v1.list"     // parleyv1.FilesRequest -> FilesReply

	FileUploadBegin  = "parley.file.v1.upload.begin"  // internalv1.UploadBeginRequest -> UploadState
	FileUploadCommit = "parley.file.v1.upload.commit" // internalv1.UploadCommitRequest -> UploadState
	FileUploadStatus = "parley.file.v1.upload.status" // internalv1.UploadStatusRequest -> UploadState
	FileTerminate    = "parley.file.v1.terminate"     // internalv1.FileTerminateRequest -> empty
	FileOpen         = "parley.file.v1.open"          // internalv1.FileOpenRequest -> FileOpenReply
)

// FileProgress is where the file service announces that an upload's record
// changed (internalv1.FileProgress); live downloads of that file wait on it.
func FileProgress(fileID string) string { return "parley.file.v1.progress." + fileID }

// UserFileEvents carries parleyv1.FileEvent for a user.
func UserFileEvents(userID string) string { return UserPrefix(userID) + "file" }

// UserFriendEvents is where messaging tells a user's gateways about friend
// changes (parleyv1.FriendEvent); UserTyping carries parleyv1.TypingEvent
// (published by messaging, subject.MsgTyping); UserReceipts carries
// parleyv1.ReceiptEvent (published by messaging on ack).
func UserFriendEvents(userID string) string { return UserPrefix(userID) + "friend" }

// UserTyping is the typing-indicator subject of a user.
func UserTyping(userID string) string { return UserPrefix(userID) + "typing" }

// UserReceipts is the read-receipt subject of a user.
func UserReceipts(userID string) string { return UserPrefix(userID) + "receipt" }

// Message delivery. Messaging publishes parleyv1.MessageEvent to
// UserMessages(uid) for each member of a direct or group conversation, and
// to RoomMessages(room) for a room, which every gateway subscribes to and
// fans out to all its authenticated connections.
func UserMessages(userID string) string { return UserPrefix(userID) + "msg" }

// RoomMessages is the delivery subject of a room ("public").
func RoomMessages(room string) string { return "parley.room.v1." + room }

// RoomMessagesAll is what gateways subscribe to for every room.
const RoomMessagesAll = "parley.room.v1.>"

// Message storage: one JetStream stream, one subject per conversation.
const (
	StreamMessages = "PARLEY_MESSAGES"
	StoreAll       = "parley.store.v1.>"
)

// Store is the stream subject of a conversation id ("room.public",
// "dm.<a>.<b>").
func Store(conversation string) string { return "parley.store.v1." + conversation }

// Presence service (request/reply, queue group QueuePresence).
const (
	PresenceConnect    = "parley.presence.v1.connect"    // internalv1.PresenceConnect
	PresenceDisconnect = "parley.presence.v1.disconnect" // internalv1.PresenceDisconnect
	PresenceHeartbeat  = "parley.presence.v1.heartbeat"  // internalv1.GatewayHeartbeat
	PresenceResync     = "parley.presence.v1.resync"     // internalv1.GatewayResync
	PresenceList       = "parley.presence.v1.list"       // internalv1.PresenceListRequest -> PresenceListReply (paged)
	PresenceUser       = "parley.presence.v1.user"       // internalv1.UserPresenceRequest -> UserPresenceReply

	// PresenceEvents carries parleyv1.PresenceChange, published by presence
	// and received by every gateway (no queue group).
	PresenceEvents = "parley.presence.v1.events"
)

// Queue groups: replicas of one service share the work of its subjects.
const (
	QueueAuth       = "parley-auth"
	QueuePresence   = "parley-presence"
	QueueMessaging  = "parley-messaging"
	QueueFile       = "parley-file"
	QueueMedia      = "parley-media"
	QueueRendezvous = "parley-rendezvous"
)

// Per-user subjects. A gateway holds one subscription to UserAll(uid) for
// every user with at least one authenticated connection on it (refcounted),
// so anything published to a user's subjects reaches exactly the gateways
// that serve that user.

// UserAll is the wildcard a gateway subscribes to for a connected user.
func UserAll(userID string) string { return "parley.user.v1." + userID + ".>" }

// UserPrefix is the prefix of every subject of one user; a gateway strips it
// to learn which event arrived.
func UserPrefix(userID string) string { return "parley.user.v1." + userID + "." }

// SessionKick is where the auth service tells gateways to end one of a
// user's sessions (internalv1.SessionKick).
func SessionKick(userID string) string { return UserPrefix(userID) + "kick" }

// JetStream key-value buckets.
const (
	BucketAccounts   = "parley_accounts"   // username -> account record
	BucketSessions   = "parley_sessions"   // session id -> session record
	BucketAuthKeys   = "parley_authkeys"   // token signing key, when not configured
	BucketCursors    = "parley_cursors"    // "<uid>.<conversation>" -> acknowledged seq
	BucketConvs      = "parley_convs"      // "<uid>.<conversation>" -> membership of direct/group conversations
	BucketMsgIndex   = "parley_msgidx"     // "<conversation>.<n>" -> stream seq of message n*IndexEvery (history paging)
	BucketGroups     = "parley_groups"     // group id -> name, owner, members and invitations
	BucketFriends    = "parley_friends"    // "<uid>.<peer uid>" -> friend state as seen by uid
	BucketFiles      = "parley_files"      // file id -> internalv1.FileRecord
	BucketFileKeys   = "parley_filekeys"   // download token signing key, when not configured
	BucketFileOffers = "parley_fileoffers" // "<sender>.<hash of client_key>" -> file id, for 24 h (idempotent offers)
	// BucketCalls holds the media-relay's calls: "call.<call_id>" ->
	// internalv1.CallRecord, "user.<uid>" -> the call id the user is in,
	// "conv.<conversation>" -> the call id running in a conversation.
	BucketCalls = "parley_calls"
	// BucketP2P holds the rendezvous's direct sessions: "s.<session_id>" ->
	// internalv1.P2PRecord.
	BucketP2P = "parley_p2p"
	// BucketDevices holds device keys: "<user_id>.<device_id>" ->
	// internalv1.DeviceRecord.
	BucketDevices = "parley_devices"
)

// NATS header keys on requests from the gateway and on error replies. The
// identity headers (user, session, username; remote address, gateway,
// connection) are written and read through libs/identity.
const (
	HeaderRemoteAddr   = "Parley-Remote-Addr"   // client's IP:port as the gateway sees it
	HeaderGatewayID    = "Parley-Gateway"       // the gateway replica
	HeaderUserID       = "Parley-User"          // authenticated user (set by the gateway, never by clients)
	HeaderSessionID    = "Parley-Session"       // authenticated session
	HeaderUsername     = "Parley-Username"      // authenticated user's display name
	HeaderConnID       = "Parley-Conn"          // the client connection on HeaderGatewayID that made the request
	HeaderErrorCode    = "Parley-Error-Code"    // numeric parleyv1.ErrorCode on an error reply
	HeaderErrorMessage = "Parley-Error-Message" // its human-readable message
	HeaderRetryAfter   = "Parley-Retry-After"   // milliseconds, with RATE_LIMITED
)
