package natcheck_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/parleychat/parley/clients/parley/internal/natsim"
	"github.com/parleychat/parley/clients/parley/natcheck"
)

var (
	rvPrimary   = netip.MustParseAddr("127.0.0.1")
	rvAlternate = netip.MustParseAddr("127.0.0.2")
)

func newRendezvous(t *testing.T) *natsim.Rendezvous {
	t.Helper()
	rv, err := natsim.NewRendezvous(rvPrimary, rvAlternate, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rv.Close() })
	return rv
}

// TestClassify puts a socket behind each kind of simulated NAT (natsim
// stands in for the namespace NAT lab) and classifies it against the
// simulated rendezvous.
func TestClassify(t *testing.T) {
	t.Parallel()
	rv := newRendezvous(t)
	addressDependent := natsim.Behavior{Mapping: natsim.MapAddressDependent, Filtering: natsim.FilterAddressDependent}
	tests := []struct {
		name      string
		b         natsim.Behavior
		mapping   natcheck.Behavior
		filtering natcheck.Behavior
		want      string
	}{
		{"full cone", natsim.FullCone, natcheck.EndpointIndependent, natcheck.EndpointIndependent, "full cone"},
		{"restricted cone", natsim.RestrictedCone, natcheck.EndpointIndependent, natcheck.AddressDependent, "restricted cone"},
		{"port-restricted cone", natsim.PortRestrictedCone, natcheck.EndpointIndependent, natcheck.AddressPortDependent, "port-restricted cone"},
		{"symmetric", natsim.Symmetric, natcheck.AddressPortDependent, natcheck.AddressPortDependent, "symmetric"},
		{"symmetric, ranged ports", natsim.Behavior{Mapping: natsim.MapAddressPortDependent, Filtering: natsim.FilterAddressPortDependent, PortMin: 40000, PortMax: 40999},
			natcheck.AddressPortDependent, natcheck.AddressPortDependent, "symmetric"},
		{"address-dependent mapping", addressDependent, natcheck.AddressDependent, natcheck.AddressDependent, "symmetric"},
		{"symmetric, open filter", natsim.Behavior{Mapping: natsim.MapAddressPortDependent, Filtering: natsim.FilterEndpointIndependent},
			natcheck.AddressPortDependent, natcheck.EndpointIndependent, "symmetric"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			nat, err := natsim.New(natsim.NextPublic(), tt.b, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer nat.Close()
			conn, err := nat.Listen()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := natcheck.Classify(ctx, conn, rv.Primary().String())
			if err != nil {
				t.Fatal(err)
			}
			if res.Mapping != tt.mapping || res.Filtering != tt.filtering || res.Name() != tt.want {
				t.Errorf("got mapping %v, filtering %v (%q); want %v, %v (%q)", res.Mapping, res.Filtering, res.Name(), tt.mapping, tt.filtering, tt.want)
			}
			if res.NoNAT || res.UDPBlocked {
				t.Errorf("NoNAT %v, UDPBlocked %v", res.NoNAT, res.UDPBlocked)
			}
			if res.Mapped.Addr() != nat.Public() {
				t.Errorf("mapped %v, want the NAT's public IP %v", res.Mapped, nat.Public())
			}
			if res.Other != rv.Alternate() {
				t.Errorf("other %v, want %v", res.Other, rv.Alternate())
			}
		})
	}
}

func TestClassifyNoNAT(t *testing.T) {
	t.Parallel()
	rv := newRendezvous(t)
	for _, bind := range []string{"127.0.0.1:0", "0.0.0.0:0"} {
		conn, err := net.ListenPacket("udp4", bind)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		res, err := natcheck.Classify(context.Background(), conn, rv.Primary().String())
		if err != nil {
			t.Fatal(err)
		}
		if !res.NoNAT || res.Name() != "open internet" || res.Mapping != natcheck.EndpointIndependent || res.Filtering != natcheck.EndpointIndependent {
			t.Errorf("%s: %+v (%s)", bind, res, res.Name())
		}
		// The socket is usable afterwards: its deadline was cleared.
		if err := conn.SetReadDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestClassifyUDPBlocked(t *testing.T) {
	t.Parallel()
	rv := newRendezvous(t)
	nat, err := natsim.New(natsim.NextPublic(), natsim.Behavior{BlockUDP: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nat.Close()
	conn, _ := nat.Listen()
	start := time.Now()
	res, err := natcheck.Classify(context.Background(), conn, rv.Primary().String())
	if err != nil {
		t.Fatal(err)
	}
	if !res.UDPBlocked || res.Name() != "UDP blocked" {
		t.Errorf("%+v (%s)", res, res.Name())
	}
	if nat.Dropped() != 3 {
		t.Errorf("%d requests sent, want 3 tries", nat.Dropped())
	}
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Errorf("gave up after %v, before 3 tries 200 ms apart and 200 ms more", d)
	}
}

// TestClassifyOneAddress: a STUN server without OTHER-ADDRESS gives the
// mapped address and ErrNoOtherAddress.
func TestClassifyOneAddress(t *testing.T) {
	t.Parallel()
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			req := &stun.Message{}
			if stun.Decode(buf[:n], req) != nil {
				continue
			}
			res := stun.MustBuild(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
				&stun.XORMappedAddress{IP: from.IP, Port: from.Port}, stun.Fingerprint)
			srv.WriteToUDP(res.Raw, from)
		}
	}()
	nat, _ := natsim.New(natsim.NextPublic(), natsim.PortRestrictedCone, nil)
	defer nat.Close()
	conn, _ := nat.Listen()
	res, err := natcheck.Classify(context.Background(), conn, srv.LocalAddr().String())
	if !errors.Is(err, natcheck.ErrNoOtherAddress) {
		t.Fatalf("err %v, want ErrNoOtherAddress", err)
	}
	if res.Mapped.Addr() != nat.Public() || res.Mapping != natcheck.Unknown || res.Name() != "unknown" {
		t.Errorf("%+v (%s)", res, res.Name())
	}
}

func TestClassifyErrors(t *testing.T) {
	t.Parallel()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := natcheck.Classify(context.Background(), conn, "no-port"); !errors.Is(err, natcheck.ErrBadServer) {
		t.Errorf("no port: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := natcheck.Classify(ctx, conn, "127.0.0.1:9"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestNames(t *testing.T) {
	tests := []struct {
		r    natcheck.Result
		want string
	}{
		{natcheck.Result{UDPBlocked: true}, "UDP blocked"},
		{natcheck.Result{NoNAT: true, Mapping: natcheck.EndpointIndependent, Filtering: natcheck.AddressPortDependent}, "open internet"},
		{natcheck.Result{Mapping: natcheck.EndpointIndependent, Filtering: natcheck.EndpointIndependent}, "full cone"},
		{natcheck.Result{Mapping: natcheck.EndpointIndependent, Filtering: natcheck.AddressDependent}, "restricted cone"},
		{natcheck.Result{Mapping: natcheck.EndpointIndependent, Filtering: natcheck.AddressPortDependent}, "port-restricted cone"},
		{natcheck.Result{Mapping: natcheck.EndpointIndependent}, "unknown"},
		{natcheck.Result{Mapping: natcheck.AddressDependent}, "symmetric"},
		{natcheck.Result{Mapping: natcheck.AddressPortDependent, Filtering: natcheck.EndpointIndependent}, "symmetric"},
		{natcheck.Result{}, "unknown"},
	}
	for _, tt := range tests {
		if got := tt.r.Name(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.r, got, tt.want)
		}
	}
}

// TestDiscover: the convenience opens its own socket; on one machine there
// is no NAT. Without a rendezvous address it says so.
func TestDiscover(t *testing.T) {
	t.Parallel()
	rv := newRendezvous(t)
	res, err := natcheck.Discover(context.Background(), rv.Primary().String())
	if err != nil {
		t.Fatal(err)
	}
	if !res.NoNAT || res.Name() != "open internet" || res.Advice() != "direct with almost every peer" {
		t.Errorf("%+v (%s: %s)", res, res.Name(), res.Advice())
	}
	if _, err := natcheck.Discover(context.Background(), ""); !errors.Is(err, natcheck.ErrNoRendezvous) {
		t.Errorf("no address: %v", err)
	}
}

func TestAdvice(t *testing.T) {
	const (
		almostAll = "direct with almost every peer"
		cones     = "direct with peers behind cone NATs; with symmetric NATs only sometimes (the birthday technique), else relayed"
		symmetric = "direct with peers behind cone NATs (a port-restricted one only sometimes); relayed with other symmetric NATs"
		unknown   = "unknown: each session tries to go direct and falls back to the relay"
	)
	ei, ad, apd := natcheck.EndpointIndependent, natcheck.AddressDependent, natcheck.AddressPortDependent
	tests := []struct {
		r    natcheck.Result
		want string
	}{
		{natcheck.Result{UDPBlocked: true}, "always relayed: no UDP gets through (the relay still cannot read anything)"},
		{natcheck.Result{NoNAT: true, Mapping: ei, Filtering: apd}, almostAll},
		{natcheck.Result{Mapping: ei, Filtering: ei}, almostAll},
		{natcheck.Result{Mapping: ei, Filtering: ad}, almostAll},
		{natcheck.Result{Mapping: ei, Filtering: apd}, cones},
		{natcheck.Result{Mapping: ad, Filtering: ad}, symmetric},
		{natcheck.Result{Mapping: apd, Filtering: ei}, symmetric},
		{natcheck.Result{Mapping: ei}, unknown},
		{natcheck.Result{}, unknown},
	}
	for _, tt := range tests {
		if got := tt.r.Advice(); got != tt.want {
			t.Errorf("%+v (%s): %q, want %q", tt.r, tt.r.Name(), got, tt.want)
		}
	}
}
