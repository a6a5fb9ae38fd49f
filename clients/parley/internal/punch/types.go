package punch

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// Errors.
var (
	// ErrNoPath: no direct pair is selected; send through the relay.
	ErrNoPath = errors.New("punch: no direct path")
	// ErrClosed: the Agent was closed.
	ErrClosed = errors.New("punch: agent closed")
	// ErrBadConfig: a Config that cannot work (see New).
	ErrBadConfig = errors.New("punch: bad config")
	// ErrRegisterTimeout: the rendezvous did not answer a registration
	// within 5 s; UDP does not get through and the session stays relayed.
	ErrRegisterTimeout = errors.New("punch: no answer from the rendezvous")
	// ErrRegisterRefused: the rendezvous answered 401 (a wrong
	// register_key, or a session it does not know).
	ErrRegisterRefused = errors.New("punch: registration refused")
)

// CandidateKind is where a peer address came from.
type CandidateKind int

const (
	// Host: an address of the peer's own interfaces (from the intro).
	Host CandidateKind = iota
	// ServerReflexive: the peer's public address as the rendezvous saw it
	// (from the intro).
	ServerReflexive
	// PeerReflexive: an address a check from the peer came from, or that
	// answered the birthday technique's probes.
	PeerReflexive
)

func (k CandidateKind) String() string {
	switch k {
	case Host:
		return "host"
	case ServerReflexive:
		return "srflx"
	case PeerReflexive:
		return "prflx"
	}
	return "unknown"
}

// Candidate is one peer address from an introduction.
type Candidate struct {
	Kind CandidateKind // Host or ServerReflexive
	Addr netip.AddrPort
}

// Mapping is a NAT's mapping as the rendezvous saw it (NatMapping).
type Mapping int

const (
	MappingUnknown Mapping = iota
	// EndpointIndependent: one public address for every destination (no
	// NAT, or a cone NAT).
	EndpointIndependent
	// EndpointDependent: a public address per destination ("symmetric").
	EndpointDependent
)

// Intro is an introduction (P2PEvent INTRO, §20.3).
type Intro struct {
	Number      uint32      // P2PSession.intro: a lower or equal number than the last one is ignored
	Candidates  []Candidate // the peer's host and server-reflexive candidates
	Mapping     Mapping     // this side's NAT
	PeerMapping Mapping     // the peer's NAT
	StartDelay  time.Duration
}

// Pair is a path: a local socket and a peer address.
type Pair struct {
	Local    netip.AddrPort // the local socket's address
	Remote   netip.AddrPort
	Kind     CandidateKind // the kind of Remote
	Birthday bool          // found by the birthday technique
}

// EventKind says what happened to the path.
type EventKind int

const (
	// EventDirect: Pair is selected; Send sends on it.
	EventDirect EventKind = iota + 1
	// EventDead: the selected Pair died (5 s of silence after a send);
	// Send returns ErrNoPath until another pair is selected. The Agent
	// registers again by itself; the caller should send
	// P2PUpdateRequest, whose introduction restarts the checks.
	EventDead
)

func (k EventKind) String() string {
	switch k {
	case EventDirect:
		return "direct"
	case EventDead:
		return "dead"
	}
	return "unknown"
}

// Event is a change of the path.
type Event struct {
	Kind EventKind
	Pair Pair
}

// Stats is a snapshot of an Agent.
type Stats struct {
	Direct          bool
	Pair            Pair           // the selected pair (when Direct)
	Srflx           netip.AddrPort // the last registration's answer
	Intro           uint32         // the last introduction's number
	TimeToFirstPair time.Duration  // from the first introduction to the first working pair; 0 before
	TimeToDirect    time.Duration  // from the first introduction to the first selected pair; 0 before
	ChecksSent      uint64         // STUN checks sent (birthday probes included)
	ChecksAnswered  uint64         // peer checks that passed the integrity check and were answered
	ExtraSockets    int            // birthday sockets open now
}

// Config sets an Agent up. Conn, SessionID, Side, PeerSide, CheckKey and
// OnPacket are required; registration needs RegisterUsername, RegisterKey
// and STUNAddr.
type Config struct {
	// Conn is the session socket (a *net.UDPConn in production). The Agent
	// reads it from New on and closes it in Close.
	Conn net.PacketConn

	SessionID string
	Side      string // "a" or "b": the suffix of this side's check USERNAME
	PeerSide  string
	CheckKey  []byte // P2PSession.check_key
	// Controlling: this side nominates the pair (side a).
	Controlling bool

	RegisterUsername string // P2PSession.register_username
	RegisterKey      []byte // P2PSession.register_key
	STUNAddr         string // the rendezvous's primary address, host:port
	STUNAltAddr      string // its alternate address; "" if it has one

	// OnPacket gets every non-STUN packet from a peer address that passed
	// a check (QUIC). It is called from the socket's reader and must not
	// block long; pkt is valid only during the call.
	OnPacket func(pkt []byte)
	// OnEvent, if set, gets the path's changes in order, one at a time,
	// never concurrently and never with a lock of the Agent held.
	OnEvent func(Event)

	Log *slog.Logger

	// ListenExtra opens one extra socket for the birthday technique. By
	// default a UDP socket on Conn's local IP and a free port. Tests put
	// the sockets behind their simulated NAT.
	ListenExtra func() (net.PacketConn, error)
	// ExtraSockets is how many sockets the symmetric side opens; 256.
	ExtraSockets int
	// ProbePortMin and ProbePortMax bound the random ports the other side
	// probes; 1024 and 65535. Tests shrink the range.
	ProbePortMin, ProbePortMax uint16
}
