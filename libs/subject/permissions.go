package subject

import (
	"bytes"
	"fmt"
	"strings"
)

// Identity is one deployable's NATS user: the subjects it may publish and
// subscribe, nothing else. Replicas of a deployable share it. This table
// is the only description of the bus's permissions: the NATS server
// configuration k8s ships (k8s/base/nats-auth.conf) is generated from it
// (go run ./cmd/natsauth) and a test checks the committed file is current.
type Identity struct {
	// Name is the deployable (the binary's name, "gateway", "media-relay");
	// its TLS user is TLSUser(Name) and its replies arrive under
	// InboxPrefix(Name).
	Name      string
	Publish   []string
	Subscribe []string
	// Responds: it answers requests (allow_responses), so it may publish
	// one reply to the reply subject of a request it received, whatever
	// that subject is, within the server's default two minutes.
	Responds bool
}

// InboxPrefix is the prefix of the reply subjects of deployable name
// ("_INBOX_gateway"): each deployable reads only its own replies. Every
// binary's connection uses it (libs/service).
func InboxPrefix(name string) string { return "_INBOX_" + name }

// TLSUser is the NATS user name a client certificate with the subject
// CN=<name>,O=parley maps to under the server's tls.verify_and_map.
// nats-server 2.15 matches a user name against the certificate's email
// SANs, its DNS SANs and its subject DN (RFC 2253, RDNs in either order);
// the CN alone is not a user name. The internal certificates carry no
// SANs, so only the DN maps.
func TLSUser(name string) string { return "CN=" + name + ",O=parley" }

// Identities is every deployable's permissions, in a fixed order.
func Identities() []Identity {
	return []Identity{
		{
			Name: "gateway",
			// The client-facing requests of every service; the internal
			// ones (lookup, session check, post file/call, call resolve,
			// presence of a user) are not the gateway's to make. Its
			// media and relay packets.
			Publish: concat(
				[]string{AuthRegister, AuthLogin, AuthResume, AuthLogout, AuthVerify, AuthDeviceRegister, AuthDeviceKeys},
				[]string{MsgSend, MsgHistory, MsgAck, MsgConversations, MsgOpenDirect, MsgTyping,
					MsgCreateGroup, MsgInvite, MsgJoinGroup, MsgLeaveGroup, MsgRemoveMember, MsgRenameGroup, MsgMembers,
					MsgAddFriend, MsgAnswerFriend, MsgRemoveFriend, MsgFriends, MsgBlock, MsgUnblock},
				[]string{PresenceConnect, PresenceDisconnect, PresenceHeartbeat, PresenceResync, PresenceList},
				[]string{FileOffer, FileAnswer, FileDownload, FileList,
					FileUploadBegin, FileUploadCommit, FileUploadStatus, FileTerminate, FileOpen},
				[]string{CallPlace, CallJoin, CallReject, CallLeave, CallMute, MediaUp("*")},
				[]string{P2POpen, P2PAnswer, P2PUpdate, P2PClose, P2PRelay("*", "*")},
			),
			// What it delivers to its connections; no stream, no bucket.
			Subscribe: []string{
				UserAll("*"), RoomMessagesAll, PresenceEvents, FileProgress("*"),
				MediaDown("*"), P2PRelay("*", "*"), InboxPrefix("gateway") + ".>",
			},
		},
		{
			Name: "auth",
			Publish: concat(
				[]string{SessionKick("*"), PresenceUser},
				kv(BucketAccounts, BucketSessions, BucketAuthKeys, BucketDevices),
			),
			Subscribe: []string{"parley.auth.v1.>", InboxPrefix("auth") + ".>"},
			Responds:  true,
		},
		{
			Name:    "presence",
			Publish: []string{PresenceEvents},
			Subscribe: []string{PresenceConnect, PresenceDisconnect, PresenceHeartbeat, PresenceResync,
				PresenceList, PresenceUser, InboxPrefix("presence") + ".>"},
			Responds: true,
		},
		{
			Name: "messaging",
			Publish: concat(
				[]string{UserMessages("*"), RoomMessagesAll, UserFriendEvents("*"), UserTyping("*"), UserReceipts("*"),
					AuthLookup, PresenceUser, StoreAll},
				stream(StreamMessages),
				kv(BucketCursors, BucketConvs, BucketMsgIndex, BucketGroups, BucketFriends),
			),
			Subscribe: []string{"parley.msg.v1.>", InboxPrefix("messaging") + ".>"},
			Responds:  true,
		},
		{
			Name: "file",
			Publish: concat(
				[]string{UserFileEvents("*"), FileProgress("*"), MsgPostFile, MsgMembers, AuthSessionCheck, PresenceUser},
				kv(BucketFiles, BucketFileKeys, BucketFileOffers),
			),
			Subscribe: []string{FileOffer, FileAnswer, FileDownload, FileList,
				FileUploadBegin, FileUploadCommit, FileUploadStatus, FileTerminate, FileOpen, InboxPrefix("file") + ".>"},
			Responds: true,
		},
		{
			Name: "media-relay",
			Publish: concat(
				[]string{UserCallEvents("*"), MediaDown("*"), MediaRelayAlive, MsgCallResolve, MsgPostCall},
				kv(BucketCalls),
			),
			Subscribe: []string{CallPlace, CallJoin, CallReject, CallLeave, CallMute,
				MediaUp("*"), MediaRelayAlive, InboxPrefix("media-relay") + ".>"},
			Responds: true,
		},
		{
			Name: "rendezvous",
			Publish: concat(
				[]string{UserP2PEvents("*"), MsgCallResolve, AuthDeviceKeys},
				kv(BucketP2P),
			),
			Subscribe: []string{P2POpen, P2PAnswer, P2PUpdate, P2PClose, InboxPrefix("rendezvous") + ".>"},
			Responds:  true,
		},
	}
}

// stream is what the owner of JetStream stream name publishes: the
// stream's API (create, update, info, purge, message get and delete,
// direct get, consumers) and the acks and flow-control replies of its
// consumers. The API's answers arrive on the owner's inbox.
func stream(name string) []string {
	return []string{
		"$JS.API.STREAM.*." + name,
		"$JS.API.STREAM.MSG.*." + name,
		"$JS.API.DIRECT.GET." + name,
		"$JS.API.DIRECT.GET." + name + ".>",
		"$JS.API.CONSUMER.*." + name,
		"$JS.API.CONSUMER.*." + name + ".>",
		"$JS.API.CONSUMER.MSG.NEXT." + name + ".>",
		"$JS.ACK." + name + ".>",
		"$JS.FC." + name + ".>",
	}
}

// kv is what the owner of KV buckets publishes: for each its stream
// KV_<bucket> and its keys' subjects $KV.<bucket>.>, and the account's
// JetStream info ($JS.API.INFO: limits and usage, no data), which
// creating a bucket asks for.
func kv(buckets ...string) []string {
	out := []string{"$JS.API.INFO"}
	for _, b := range buckets {
		out = append(out, stream("KV_"+b)...)
		out = append(out, "$KV."+b+".>")
	}
	return out
}

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// PermissionsVar is the configuration variable holding an identity's
// permissions ("MEDIA_RELAY_PERMISSIONS").
func PermissionsVar(name string) string {
	b := []byte(name + "_permissions")
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case c == '-' || c == '.':
			b[i] = '_'
		}
	}
	return string(b)
}

// NATSConfig renders the identities as nats-server configuration: one
// variable per identity holding its permissions and, with users, the
// authorization block that gives each to the client certificate
// TLSUser(name) (the server's tls block needs verify_and_map: true).
// Without users it is the permissions alone, for an authorization block
// of one's own (nkey or password users: permissions: $GATEWAY_PERMISSIONS).
func NATSConfig(users bool) []byte {
	var b bytes.Buffer
	b.WriteString("# Parley's NATS permissions, one user per deployable. GENERATED from\n" +
		"# libs/subject/permissions.go by `cd libs && go run ./cmd/natsauth`: do not\n" +
		"# edit; change the table and regenerate (scripts/generate.sh).\n")
	list := func(indent, key string, subjects []string) {
		fmt.Fprintf(&b, "%s%s: {\n%s  allow: [\n", indent, key, indent)
		for _, s := range subjects {
			fmt.Fprintf(&b, "%s    %q\n", indent, s)
		}
		fmt.Fprintf(&b, "%s  ]\n%s}\n", indent, indent)
	}
	for _, id := range Identities() {
		fmt.Fprintf(&b, "\n%s: {\n", PermissionsVar(id.Name))
		list("  ", "publish", id.Publish)
		list("  ", "subscribe", id.Subscribe)
		if id.Responds {
			b.WriteString("  allow_responses: true\n")
		}
		b.WriteString("}\n")
	}
	if !users {
		return b.Bytes()
	}
	b.WriteString("\n# Each deployable's client certificate (subject CN=<deployable>,O=parley)\n" +
		"# is its user: the server's tls block has verify_and_map: true. A\n" +
		"# certificate of the CA that maps to none of these users is refused.\n" +
		"authorization {\n  users: [\n")
	for _, id := range Identities() {
		fmt.Fprintf(&b, "    { user: %q, permissions: $%s }\n", TLSUser(id.Name), PermissionsVar(id.Name))
	}
	b.WriteString("  ]\n}\n")
	return b.Bytes()
}

// MayPublish reports whether the identity's publish allow-list matches
// subj (NATS wildcards: "*" one token, ">" the rest).
func (id Identity) MayPublish(subj string) bool { return anyMatch(id.Publish, subj) }

// MaySubscribe is MayPublish for subscriptions: subj (itself possibly a
// wildcard) must be covered by one allowed pattern.
func (id Identity) MaySubscribe(subj string) bool { return anyMatch(id.Subscribe, subj) }

// IdentityOf returns the identity of deployable name.
func IdentityOf(name string) (Identity, bool) {
	for _, id := range Identities() {
		if id.Name == name {
			return id, true
		}
	}
	return Identity{}, false
}

func anyMatch(patterns []string, subj string) bool {
	for _, p := range patterns {
		if covers(strings.Split(p, "."), strings.Split(subj, ".")) {
			return true
		}
	}
	return false
}

// covers: pattern p matches every subject s matches (s's own "*" only
// under p's "*" or ">").
func covers(p, s []string) bool {
	for i, tok := range p {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) || (tok == "*" && s[i] == ">") {
			return false
		}
	}
	return len(p) == len(s)
}
