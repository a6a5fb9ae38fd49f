package natlab

import (
	"encoding/json"
	"testing"

	"github.com/parleychat/parley/libs/testenv/natlab"
)

// natReport is `parley nat --json`'s output.
type natReport struct {
	Name       string `json:"name"`
	Mapping    string `json:"mapping"`
	Filtering  string `json:"filtering"`
	NoNAT      bool   `json:"no_nat"`
	UDPBlocked bool   `json:"udp_blocked"`
	PublicAddr string `json:"public_addr"`
	Rendezvous string `json:"rendezvous"`
}

// TestNATClassification: `parley nat` from behind each kind of NAT
// classifies it (RFC 5780, against parleyd's rendezvous, whose address the
// server announces in its Welcome): the mapping, the filtering and the
// public address; no NAT on the public network; UDP blocked where it is.
func TestNATClassification(t *testing.T) {
	t.Parallel()
	l := natlab.New(t)
	startParleyd(t, l)

	cases := []struct {
		name string
		host func() *natlab.Client
		want natReport
	}{
		{"full-cone", func() *natlab.Client { return l.AddNAT(natlab.FullCone).AddClient() },
			natReport{Name: "full cone", Mapping: "endpoint-independent", Filtering: "endpoint-independent"}},
		{"restricted-cone", func() *natlab.Client { return l.AddNAT(natlab.RestrictedCone).AddClient() },
			natReport{Name: "restricted cone", Mapping: "endpoint-independent", Filtering: "address-dependent"}},
		{"port-restricted-cone", func() *natlab.Client { return l.AddNAT(natlab.PortRestrictedCone).AddClient() },
			natReport{Name: "port-restricted cone", Mapping: "endpoint-independent", Filtering: "address-and-port-dependent"}},
		{"symmetric", func() *natlab.Client { return l.AddNAT(natlab.Symmetric).AddClient() },
			natReport{Name: "symmetric", Mapping: "address-and-port-dependent", Filtering: "address-and-port-dependent"}},
		{"no-udp", func() *natlab.Client { return l.AddNAT(natlab.NoUDP).AddClient() },
			natReport{Name: "UDP blocked", Mapping: "unknown", Filtering: "unknown", UDPBlocked: true}},
		{"no-nat", l.AddPublicHost,
			natReport{Name: "open internet", Mapping: "endpoint-independent", Filtering: "endpoint-independent", NoNAT: true}},
	}
	for _, tc := range cases {
		host := tc.host()
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := &user{name: tc.name, host: host, dir: t.TempDir()}
			out := u.run(t, "nat", "--json")
			var got natReport
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("parley nat --json printed %q: %v", out, err)
			}
			want := tc.want
			want.Rendezvous = stunAddr
			// The public address: the NAT's WAN address, or the host's own.
			switch {
			case got.UDPBlocked:
				if got.PublicAddr != "" {
					t.Errorf("UDP blocked, yet a public address %q", got.PublicAddr)
				}
			case host.NAT() != nil:
				if ip := addrIP(got.PublicAddr); ip != host.NAT().WAN.String() {
					t.Errorf("public address %q, want the NAT's %v", got.PublicAddr, host.NAT().WAN)
				}
			default:
				if ip := addrIP(got.PublicAddr); ip != host.Addr().String() {
					t.Errorf("public address %q, want the host's own %v", got.PublicAddr, host.Addr())
				}
			}
			got.PublicAddr = ""
			if got != want {
				t.Errorf("parley nat from behind %s:\n got %+v\nwant %+v", tc.name, got, want)
			}
		})
	}
}

// addrIP is the IP of "ip:port".
func addrIP(s string) string {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return s[:i]
		}
	}
	return s
}
