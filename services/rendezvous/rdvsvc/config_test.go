package rdvsvc_test

import (
	"context"
	"errors"
	"flag"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/rendezvous/rdvsvc"
)

func TestConfigDefaults(t *testing.T) {
	c := rdvsvc.DefaultConfig()
	if c.STUNAddr != "127.0.0.1:3478" || c.STUNAltAddr != "" || c.OfferTimeout != 60*time.Second || c.IdleTimeout != 24*time.Hour {
		t.Fatalf("defaults %+v differ from the design", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	// The environment sets every flag, as for every Parley binary.
	fs := flag.NewFlagSet("rendezvous", flag.ContinueOnError)
	var got rdvsvc.Config
	got.RegisterFlags(fs)
	t.Setenv("PARLEY_STUN_ALT_ADDR", "127.0.0.2:3479")
	t.Setenv("PARLEY_STUN_RATE", "7")
	if err := service.Parse(fs, nil); err != nil {
		t.Fatal(err)
	}
	if got.STUNAltAddr != "127.0.0.2:3479" || got.STUNRate != 7 {
		t.Fatalf("from the environment: %+v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*rdvsvc.Config)
		ok   bool
	}{
		{"two addresses", func(c *rdvsvc.Config) { c.STUNAltAddr = "127.0.0.2:3479" }, true},
		{"v6", func(c *rdvsvc.Config) { c.STUNAddr, c.STUNAltAddr = "[::1]:3478", "[fd00::2]:3479" }, true},
		{"a wildcard bind with a public address", func(c *rdvsvc.Config) {
			c.STUNAddr, c.STUNPublicAddr = "0.0.0.0:3478", "203.0.113.5:3478"
		}, true},
		{"public addresses", func(c *rdvsvc.Config) {
			c.STUNAltAddr, c.STUNPublicAddr, c.STUNPublicAltAddr = "10.0.0.2:3479", "203.0.113.5:3478", "203.0.113.6:3479"
		}, true},
		{"any ports", func(c *rdvsvc.Config) { c.STUNAddr, c.STUNAltAddr = "127.0.0.1:0", "127.0.0.2:0" }, true},
		{"no rate limit", func(c *rdvsvc.Config) { c.STUNRate = 0 }, true},

		{"no address", func(c *rdvsvc.Config) { c.STUNAddr = "" }, false},
		{"a name", func(c *rdvsvc.Config) { c.STUNAddr = "localhost:3478" }, false},
		{"no port", func(c *rdvsvc.Config) { c.STUNAddr = "127.0.0.1" }, false},
		{"a zone", func(c *rdvsvc.Config) { c.STUNAddr = "[fe80::1%eth0]:3478" }, false},
		{"alternate on the same IP", func(c *rdvsvc.Config) { c.STUNAltAddr = "127.0.0.1:3479" }, false},
		{"alternate on the same port", func(c *rdvsvc.Config) { c.STUNAltAddr = "127.0.0.2:3478" }, false},
		{"alternate of another family", func(c *rdvsvc.Config) { c.STUNAltAddr = "[::1]:3479" }, false},
		{"alternate with a wildcard", func(c *rdvsvc.Config) {
			c.STUNAddr, c.STUNAltAddr, c.STUNPublicAddr = "0.0.0.0:3478", "127.0.0.2:3479", "203.0.113.5:3478"
		}, false},
		{"port 0 in one only", func(c *rdvsvc.Config) { c.STUNAddr, c.STUNAltAddr = "127.0.0.1:0", "127.0.0.2:3479" }, false},
		{"a wildcard bind without a public address", func(c *rdvsvc.Config) { c.STUNAddr = "0.0.0.0:3478" }, false},
		{"public port 0", func(c *rdvsvc.Config) { c.STUNPublicAddr = "203.0.113.5:0" }, false},
		{"public wildcard", func(c *rdvsvc.Config) { c.STUNPublicAddr = "0.0.0.0:3478" }, false},
		{"public alternate without an alternate", func(c *rdvsvc.Config) { c.STUNPublicAltAddr = "203.0.113.6:3479" }, false},
		{"public addresses on one IP", func(c *rdvsvc.Config) {
			c.STUNAltAddr, c.STUNPublicAddr, c.STUNPublicAltAddr = "10.0.0.2:3479", "203.0.113.5:3478", "203.0.113.5:3479"
		}, false},
		{"negative rate", func(c *rdvsvc.Config) { c.STUNRate = -1 }, false},
		{"no STUN workers", func(c *rdvsvc.Config) { c.STUNWorkers = 0 }, false},
		{"no offer timeout", func(c *rdvsvc.Config) { c.OfferTimeout = 0 }, false},
		{"negative idle timeout", func(c *rdvsvc.Config) { c.IdleTimeout = -time.Hour }, false},
		{"no sweep", func(c *rdvsvc.Config) { c.SweepInterval = 0 }, false},
		{"six KV replicas", func(c *rdvsvc.Config) { c.KVReplicas = 6 }, false},
		{"no workers", func(c *rdvsvc.Config) { c.Workers = 0 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rdvsvc.DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if tc.ok {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if !errors.Is(err, rdvsvc.ErrBadConfig) {
				t.Fatalf("Validate = %v, want ErrBadConfig", err)
			}
			if _, err := rdvsvc.New(c, service.Deps{}); !errors.Is(err, rdvsvc.ErrBadConfig) {
				t.Fatalf("New = %v, want ErrBadConfig", err)
			}
		})
	}
}

// With public addresses configured (a NAT in front), answers and sessions
// name those, not the bound ones.
func TestPublicAddrs(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.STUNPublicAddr, cfg.STUNPublicAltAddr = "203.0.113.5:3478", "203.0.113.6:3479"
	r := e.start(cfg)
	c := newClient(t, "127.0.0.1")
	res, from := c.do(r.primary, request(changeRequest{port: true}))
	if from != r.socketAddr(0, 1) {
		t.Fatalf("answer from %s, want %s", from, r.socketAddr(0, 1))
	}
	var origin stun.ResponseOrigin
	var other stun.OtherAddress
	if err := res.Parse(&origin, &other); err != nil {
		t.Fatal(err)
	}
	if got := addrPort(t, origin.IP, origin.Port); got != netip.MustParseAddrPort("203.0.113.5:3479") {
		t.Errorf("RESPONSE-ORIGIN %s, want the public IP with the public alternate port", got)
	}
	if got := addrPort(t, other.IP, other.Port); got != netip.MustParseAddrPort("203.0.113.6:3479") {
		t.Errorf("OTHER-ADDRESS %s", got)
	}
	dev := e.addDevice(alice)
	var s parleyv1.P2PSession
	e.mustCall(alice, subject.P2POpen, &parleyv1.P2POpenRequest{ToUsername: bob.name, DeviceId: dev.DeviceId}, &s)
	if s.StunAddr != cfg.STUNPublicAddr || s.StunAltAddr != cfg.STUNPublicAltAddr {
		t.Errorf("session names %s %s", s.StunAddr, s.StunAltAddr)
	}
}

// Listen fails, naming the address, when a port is taken.
func TestListenTaken(t *testing.T) {
	taken, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	e := newEnv(t)
	cfg := testConfig()
	// The primary's port is free on 127.0.0.1, taken on 127.0.0.2.
	cfg.STUNAddr = "127.0.0.1:" + strconv.Itoa(taken.LocalAddr().(*net.UDPAddr).Port)
	cfg.STUNAltAddr = "127.0.0.2:" + strconv.Itoa(freeUDP(t))
	svc, err := rdvsvc.New(cfg, service.Deps{NC: e.nc})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Listen(); err == nil {
		t.Fatal("Listen succeeded on a taken port")
	}
	// With port 0 it looks for ports free on both addresses.
	cfg = testConfig()
	svc, err = rdvsvc.New(cfg, service.Deps{NC: e.nc})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Listen(); err != nil {
		t.Fatal(err)
	}
	p, a := svc.Addrs()
	if p.Port() == 0 || a.Port() == 0 || p.Port() == a.Port() {
		t.Fatalf("bound %s and %s", p, a)
	}
	// Run with an ended context closes the sockets at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := svc.Run(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(p))
	if err != nil {
		t.Fatalf("the primary still bound after Run: %v", err)
	}
	c.Close()
}

// freeUDP is a port free on 127.0.0.2 a moment ago.
func freeUDP(t *testing.T) int {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
