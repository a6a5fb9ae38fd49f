package natsim

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"

	"github.com/pion/stun/v3"
)

// Rendezvous is a minimal STUN server standing in for Parley's rendezvous
// (docs/protocol.md §20.3), which another package implements for real: it
// answers Binding requests on two IPs and two ports (RFC 5780:
// XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS, CHANGE-REQUEST), and
// takes registrations (USERNAME with a short-term MESSAGE-INTEGRITY key
// from AddSession; error 401 on a failed check), recording each user's
// server-reflexive address and mapping. Introductions are the tests' job:
// they read Registration.
type Rendezvous struct {
	log *slog.Logger
	// socks[i][j]: IP i (0 primary, 1 alternate), port j (0 primary, 1 alternate).
	socks [2][2]*net.UDPConn
	addrs [2][2]netip.AddrPort

	mu       sync.Mutex
	keys     map[string][]byte
	regs     map[string]*Registration
	onChange func(username string, r Registration)
	wg       sync.WaitGroup
}

// Registration is what the rendezvous saw of one registering socket.
type Registration struct {
	Srflx netip.AddrPort // the source address at the primary address
	Alt   netip.AddrPort // the source address at the alternate address
	Count int            // accepted registrations
}

// EndpointDependent says whether the primary and alternate saw two
// different addresses (a "symmetric" NAT); valid once both were seen.
func (r Registration) EndpointDependent() bool {
	return r.Srflx.IsValid() && r.Alt.IsValid() && r.Srflx != r.Alt
}

// NewRendezvous listens on primary and alternate (two loopback IPs, say
// 127.0.0.1 and 127.0.0.2), on two free ports common to both.
// onChange, if not nil, is called (from the server's goroutines) after
// each registration that changed an address.
func NewRendezvous(primary, alternate netip.Addr, onChange func(username string, r Registration), log *slog.Logger) (*Rendezvous, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rv := &Rendezvous{log: log, keys: map[string][]byte{}, regs: map[string]*Registration{}, onChange: onChange}
	ips := [2]netip.Addr{primary, alternate}
	for try := 0; ; try++ {
		if try == 100 {
			return nil, errors.New("natsim: no two ports free on both rendezvous addresses")
		}
		ports := [2]int{20000 + rand.IntN(12000), 20000 + rand.IntN(12000)}
		if ports[0] == ports[1] {
			continue
		}
		ok := true
		for i := range 2 {
			for j := range 2 {
				s, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ips[i], uint16(ports[j]))))
				if err != nil {
					ok = false
					break
				}
				rv.socks[i][j] = s
				rv.addrs[i][j] = s.LocalAddr().(*net.UDPAddr).AddrPort()
			}
		}
		if ok {
			break
		}
		for i := range 2 {
			for j := range 2 {
				if rv.socks[i][j] != nil {
					rv.socks[i][j].Close()
					rv.socks[i][j] = nil
				}
			}
		}
	}
	for i := range 2 {
		for j := range 2 {
			rv.wg.Add(1)
			go rv.serve(i, j)
		}
	}
	return rv, nil
}

// Primary is stun_addr; Alternate is stun_alt_addr (other IP, other port).
func (rv *Rendezvous) Primary() netip.AddrPort   { return rv.addrs[0][0] }
func (rv *Rendezvous) Alternate() netip.AddrPort { return rv.addrs[1][1] }

// AddSession lets username register with key.
func (rv *Rendezvous) AddSession(username string, key []byte) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.keys[username] = key
}

// Registration is what username registered so far.
func (rv *Rendezvous) Registration(username string) (Registration, bool) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	r, ok := rv.regs[username]
	if !ok {
		return Registration{}, false
	}
	return *r, true
}

// Close stops the server.
func (rv *Rendezvous) Close() error {
	for i := range 2 {
		for j := range 2 {
			rv.socks[i][j].Close()
		}
	}
	rv.wg.Wait()
	return nil
}

// CHANGE-REQUEST flags (RFC 5780 §7.2).
const (
	changeIP   = 0x04
	changePort = 0x02
)

func (rv *Rendezvous) serve(i, j int) {
	defer rv.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := rv.socks[i][j].ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if err := rv.handle(i, j, buf[:n], from); err != nil {
			rv.log.Debug("rendezvous: dropped", "from", from, "err", err)
		}
	}
}

func (rv *Rendezvous) handle(i, j int, b []byte, from netip.AddrPort) error {
	if !stun.IsMessage(b) {
		return errors.New("not STUN")
	}
	req := &stun.Message{}
	if err := stun.Decode(b, req); err != nil {
		return err
	}
	if req.Type != stun.BindingRequest {
		return fmt.Errorf("not a binding request: %v", req.Type)
	}
	if req.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.Check(req); err != nil {
			return err
		}
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	oi, oj := i, j
	if v, err := req.Get(stun.AttrChangeRequest); err == nil && len(v) == 4 {
		f := binary.BigEndian.Uint32(v)
		if f&changeIP != 0 {
			oi = 1 - i
		}
		if f&changePort != 0 {
			oj = 1 - j
		}
	}
	out := rv.socks[oi][oj]
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(req.TransactionID),
		&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
		&stun.ResponseOrigin{IP: rv.addrs[oi][oj].Addr().AsSlice(), Port: int(rv.addrs[oi][oj].Port())},
		&stun.OtherAddress{IP: rv.addrs[1][1].Addr().AsSlice(), Port: int(rv.addrs[1][1].Port())},
		stun.NewSoftware("natsim rendezvous"),
	}
	var user stun.Username
	if err := user.GetFrom(req); err == nil {
		rv.mu.Lock()
		key, ok := rv.keys[user.String()]
		rv.mu.Unlock()
		if !ok || stun.NewShortTermIntegrity(string(key)).Check(req) != nil {
			res, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID),
				stun.NewType(stun.MethodBinding, stun.ClassErrorResponse), stun.CodeUnauthorized, stun.Fingerprint)
			if err != nil {
				return err
			}
			_, err = rv.socks[i][j].WriteToUDPAddrPort(res.Raw, from)
			return err
		}
		// As Parley's rendezvous: an address is registered only with the
		// NONCE for it (§20.3), which a 438 gives.
		want := regNonce(key, from)
		var n stun.Nonce
		if n.GetFrom(req) != nil || string(n) != want {
			res, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID),
				stun.NewType(stun.MethodBinding, stun.ClassErrorResponse), stun.CodeStaleNonce, stun.NewNonce(want),
				stun.NewShortTermIntegrity(string(key)), stun.Fingerprint)
			if err != nil {
				return err
			}
			_, err = rv.socks[i][j].WriteToUDPAddrPort(res.Raw, from)
			return err
		}
		rv.record(user.String(), i == 0 && j == 0, from)
		setters = append(setters, stun.BindingSuccess, stun.NewShortTermIntegrity(string(key)), stun.Fingerprint)
		out = rv.socks[i][j] // registrations are answered from where they arrived
	} else {
		setters = append(setters, stun.BindingSuccess, stun.Fingerprint)
	}
	res, err := stun.Build(setters...)
	if err != nil {
		return err
	}
	_, err = out.WriteToUDPAddrPort(res.Raw, from)
	return err
}

// regNonce is the simulation's NONCE for a registration from from: the
// real rendezvous keys it with a secret of its own.
func regNonce(key []byte, from netip.AddrPort) string {
	h := sha256.Sum256(append(append([]byte(nil), key...), from.String()...))
	return hex.EncodeToString(h[:12])
}

func (rv *Rendezvous) record(user string, primary bool, from netip.AddrPort) {
	rv.mu.Lock()
	r := rv.regs[user]
	if r == nil {
		r = &Registration{}
		rv.regs[user] = r
	}
	r.Count++
	changed := false
	if primary && r.Srflx != from {
		r.Srflx, changed = from, true
	}
	if !primary && r.Alt != from {
		r.Alt, changed = from, true
	}
	snap := *r
	cb := rv.onChange
	rv.mu.Unlock()
	if changed && cb != nil {
		cb(user, snap)
	}
}
