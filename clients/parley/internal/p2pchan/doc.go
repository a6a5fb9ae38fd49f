// Package p2pchan is the end-to-end encrypted channel of a direct session
// (docs/protocol.md §20.5-§20.7) over any net.PacketConn: the session's
// UDP socket, or the NAT traversal's path that goes direct or through the
// server's relay. Neither the server nor the relay can read it.
//
// The conversation:
//
//   - QUIC v1 (quic-go), the controlling side (a, Dial) the client, ALPN
//     "parley-p2p/1", server name "parley-p2p". Each side presents a
//     self-signed certificate of its Ed25519 device key (devkey); each
//     accepts only the key it expects (the one pinned for the peer device),
//     and the server demands the client's. Datagrams on; packets of at
//     most 1252 bytes with path-MTU discovery off, so every UDP payload
//     fits §20.5's 1452; idle timeout 30 s, a PING after 15 s of silence.
//   - Control stream: the client's first bidirectional stream. Both sides
//     first send DirectHello; then DirectChat / DirectChatAck and
//     DirectCall, each a DirectFrame with a 4-byte big-endian length (at
//     most 1 MiB). A message is kept until acknowledged and sent again, in
//     order, on every new connection; the receiver stores an id once
//     (History) and acknowledges it every time.
//   - Files: a bidirectional stream per file, opened by the sender:
//     DirectFileOffer, DirectFileAnswer{offset} (the bytes the receiver
//     kept for this transfer_id), the raw bytes from there, the sender's
//     FIN, DirectFileDone{ok} after the receiver checked the whole file's
//     SHA-256.
//   - Call audio: QUIC datagrams of 12 bytes of header and an Opus frame
//     (§20.7), after DirectCall{direct: true} on the control stream.
//
// A Channel outlives its QUIC connections: when one dies (both paths dead
// for the idle timeout) the controlling side dials again and the
// controlled side accepts again on the same socket, unacknowledged
// messages are resent and cut transfers resume. A protocol violation by
// the peer ends the channel, telling the peer why (application error 1).
package p2pchan
