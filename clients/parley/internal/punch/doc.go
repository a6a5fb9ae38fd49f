// Package punch finds and keeps a direct UDP path between the two devices
// of a direct session through their NATs (docs/protocol.md §20.3-§20.4):
// an ICE-style agent of Parley's own, on pion/stun's codec.
//
// Why not pion/ice: a session uses one UDP socket for everything — the
// rendezvous registration, the connectivity checks and QUIC (§20.5) — so
// the agent must own that socket's reads and pass QUIC packets on; a
// symmetric NAT needs the birthday technique with extra sockets; and the
// fallback path is Parley's own relay (P2PRelay frames), not TURN.
//
// The conversation, for one session:
//
//  1. New takes the session socket; from then on the Agent reads it and
//     tells its packets apart by the first byte (RFC 7983): STUN (0-3)
//     it handles, QUIC (64-255) from a peer address that passed a check
//     goes to Config.OnPacket, anything else is dropped.
//  2. Register sends an authenticated Binding request to both rendezvous
//     addresses every 200 ms until answered (5 s at most) and returns the
//     server-reflexive address. The rendezvous then introduces the peers.
//  3. Introduce (each P2PEvent INTRO) starts the checks: after
//     Intro.StartDelay, a Binding request with USERNAME
//     "<session>:<side>" and MESSAGE-INTEGRITY (check_key) to every peer
//     candidate every 20 ms for 1 s, every 100 ms up to 5 s, every second
//     up to 30 s; a newer introduction starts again (keeping the
//     peer-reflexive candidates the peer checked from in the last second:
//     its introduction may have come first). Every check from the
//     peer that passes the integrity check is answered; one from an
//     address not known yet adds a peer-reflexive candidate, which gets a
//     check at once (a triggered check, RFC 8445 §7.3.1.4) and again as
//     the peer's checks keep coming. A pair (a local socket, a peer
//     address) works when an answer comes back from that address; it
//     needs no more checks then.
//  4. The controlling side nominates the first working pair (waiting up to
//     50 ms for one to a host candidate): it repeats the check with
//     USE-CANDIDATE until answered. The controlled side uses the pair the
//     last nomination came on. Send then sends on that pair (Event
//     EventDirect); before, Send returns ErrNoPath and the caller relays.
//  5. When one side's NAT maps endpoint-dependently and the other's does
//     not, and no pair works 300 ms after the start, the birthday
//     technique runs for 5 s: the symmetric side opens 256 more sockets and
//     checks the peer's server-reflexive address from each every 500 ms;
//     the other side checks 1024 random ports of the symmetric side's IP
//     every 500 ms. A pair found so on the symmetric side uses its extra
//     socket; the extra sockets no pair uses are closed.
//  6. Liveness: a packet sent on the selected pair followed by 3 s of
//     silence from the peer starts probes (a check every 500 ms; the
//     controlling side's carry USE-CANDIDATE); 5 s of silence declares the
//     pair dead (EventDead): Send returns ErrNoPath again, the Agent
//     registers again, and checks start over with the next introduction
//     (the caller sends P2PUpdateRequest, which brings one).
//  7. Moving: a pair is repaired without the server when a NAT maps a side
//     anew or a side roams. The controlled side moves its pair to any
//     address a USE-CANDIDATE check comes from (the controlling side's
//     probes take the pair with them); the controlling side nominates the
//     pair to a new address the peer's check comes from on the selected
//     pair's socket while the pair is silent (nothing heard on it for 1 s)
//     or with USE-CANDIDATE. Moved (the caller saw its own addresses
//     change) sends USE-CANDIDATE checks on the pair every 100 ms until
//     one is answered (2 s at most) and registers again.
//
// An Agent is safe for concurrent use. Close stops everything and closes
// every socket, the session socket included.
package punch
