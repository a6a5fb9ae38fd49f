package main

import (
	"github.com/parleychat/parley/bench/internal/child"

	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"time"
)

// cluster is the multi-process Parley under test: nats-server (JetStream),
// redis-server, auth, presence, the messaging replicas and the gateways.
type cluster struct {
	ps *child.Set
	// limit, if set, holds the room members' gateways
	// (-member-gateway-cpu).
	limit *cpuLimit
	dir   string // work directory (NATS store)
	opts  options

	nats      *child.Proc
	natsURL   string
	natsMon   string // nats-server's monitoring address ("": none, parleyd)
	redis     *child.Proc
	redisAddr string
	auth      *child.Proc
	presence  *child.Proc
	messaging []*child.Proc
	gateways  []*gateway
	// tlsCert, tlsKey: the self-signed certificate of the TLS gateways
	// (-room-transports tls), made when the first starts.
	tlsCert, tlsKey string
}

// gateway is one running gateway replica.
type gateway struct {
	*child.Proc
	id               string
	tcp, admin, http string
	// tls: its TCP port speaks TLS (a room member gateway of
	// -room-transports tls); only those members connect to it.
	tls bool
}

// start brings up everything, each process waited for (TCP for the
// servers, /readyz for Parley's binaries).
func (c *cluster) start(ctx context.Context) error {
	if c.opts.parleyd {
		return c.startParleyd(ctx)
	}
	var err error
	if c.natsMon, err = child.FreeAddr(); err != nil {
		return err
	}
	if c.nats, c.natsURL, err = c.ps.StartNATS(ctx, filepath.Join(c.dir, "nats"), "-m", child.PortOf(c.natsMon)); err != nil {
		return err
	}
	if c.redis, c.redisAddr, err = c.ps.StartRedis(ctx, c.opts.redisServer); err != nil {
		return err
	}

	// Cheap hashing: registering the benchmark's users is setup, not what
	// is measured. No per-IP limits: every client comes from 127.0.0.1.
	if c.auth, err = c.startService(ctx, "auth", "auth", "PARLEY_ARGON2_MEMORY=1024", "PARLEY_ARGON2_TIME=1",
		"PARLEY_REGISTER_IP_LIMIT=0", "PARLEY_LOGIN_IP_LIMIT=0"); err != nil {
		return err
	}
	if c.presence, err = c.startService(ctx, "presence", "presence", "PARLEY_REDIS_ADDR="+c.redisAddr); err != nil {
		return err
	}
	for i := range c.opts.messaging {
		p, err := c.startService(ctx, "messaging-"+strconv.Itoa(i+1), "messaging", messagingLimitsOff...)
		if err != nil {
			return err
		}
		c.messaging = append(c.messaging, p)
	}
	for i := range c.opts.gateways {
		g, err := c.startGateway(ctx, fmt.Sprintf("gw%d", i+1), c.tlsGateway(i))
		if err != nil {
			return err
		}
		c.gateways = append(c.gateways, g)
	}
	if c.limit != nil {
		members := c.gateways
		if c.opts.sendersApart && len(members) > 1 {
			members = members[:len(members)-1]
		}
		for _, g := range members {
			if err := c.limit.add(g.PID()); err != nil {
				return fmt.Errorf("-member-gateway-cpu: %s: %w", g.id, err)
			}
		}
	}
	return nil
}

// messagingLimitsOff lifts messaging's per-user rate of sends: each
// benchmark sender sends far faster than a person (hundreds a second in
// msg-direct's closed loop), which the default (60 a minute after a burst
// of 30) exists to stop. The benchmark uses no other limited request.
var messagingLimitsOff = []string{"PARLEY_MSG_SEND_LIMIT=0"}

// startParleyd starts the single-process server instead (embedded NATS
// and in-process Redis protocol server, every service in one process); it
// counts as the one gateway.
func (c *cluster) startParleyd(ctx context.Context) error {
	g := &gateway{id: "parleyd"}
	for _, a := range []*string{&g.tcp, &g.admin, &g.http} {
		var err error
		if *a, err = child.FreeAddr(); err != nil {
			return err
		}
	}
	env := append([]string{"PARLEY_DATA_DIR=" + filepath.Join(c.dir, "parleyd"), "PARLEY_ADMIN_ADDR=" + g.admin,
		"PARLEY_TCP_ADDR=" + g.tcp, "PARLEY_HTTP_ADDR=" + g.http, "PARLEY_UDP_ADDR=127.0.0.1:0",
		"PARLEY_ARGON2_MEMORY=1024", "PARLEY_ARGON2_TIME=1",
		"PARLEY_REGISTER_IP_LIMIT=0", "PARLEY_LOGIN_IP_LIMIT=0"}, messagingLimitsOff...)
	p, err := c.ps.Start("parleyd", "parleyd", env)
	if err != nil {
		return err
	}
	g.Proc = p
	c.gateways = append(c.gateways, g)
	return child.WaitReady(ctx, p, g.admin, 60*time.Second)
}

// startService starts a Parley service binary with its own admin port and
// waits for /readyz.
func (c *cluster) startService(ctx context.Context, name, binary string, env ...string) (*child.Proc, error) {
	admin, err := child.FreeAddr()
	if err != nil {
		return nil, err
	}
	env = append([]string{"PARLEY_NATS_URL=" + c.natsURL, "PARLEY_ADMIN_ADDR=" + admin}, env...)
	p, err := c.ps.Start(name, binary, env)
	if err != nil {
		return nil, err
	}
	return p, child.WaitReady(ctx, p, admin, 60*time.Second)
}

// tlsGateway reports whether gateway i serves TLS: a members' gateway
// whose transport (runRoom's split: gateway i carries transport i mod the
// transports' number) is tls.
func (c *cluster) tlsGateway(i int) bool {
	o := c.opts
	if o.sendersApart && o.gateways > 1 && i == o.gateways-1 {
		return false
	}
	return o.roomTransports[i%len(o.roomTransports)] == "tls"
}

func (c *cluster) startGateway(ctx context.Context, id string, withTLS bool) (*gateway, error) {
	g := &gateway{id: id, tls: withTLS}
	for _, a := range []*string{&g.tcp, &g.admin, &g.http} {
		var err error
		if *a, err = child.FreeAddr(); err != nil {
			return nil, err
		}
	}
	env := []string{"PARLEY_NATS_URL=" + c.natsURL, "PARLEY_ADMIN_ADDR=" + g.admin,
		"PARLEY_TCP_ADDR=" + g.tcp, "PARLEY_HTTP_ADDR=" + g.http, "PARLEY_GATEWAY_ID=" + id,
		// The media port defaults to a fixed one: two gateways (or a
		// gateway of another run) would collide on it.
		"PARLEY_UDP_ADDR=127.0.0.1:0"}
	if withTLS {
		if c.tlsCert == "" {
			var err error
			if c.tlsCert, c.tlsKey, err = child.SelfSignedCert(c.dir); err != nil {
				return nil, err
			}
		}
		env = append(env, "PARLEY_TLS_CERT="+c.tlsCert, "PARLEY_TLS_KEY="+c.tlsKey)
	}
	p, err := c.ps.Start(id, "gateway", env)
	if err != nil {
		return nil, err
	}
	g.Proc = p
	return g, child.WaitReady(ctx, p, g.admin, 30*time.Second)
}

// servers lists the processes whose CPU is reported, in report order.
func (c *cluster) servers() []*child.Proc {
	var out []*child.Proc
	if !c.opts.parleyd {
		out = []*child.Proc{c.nats, c.redis, c.auth, c.presence}
	}
	out = append(out, c.messaging...)
	for _, g := range c.gateways {
		out = append(out, g.Proc)
	}
	return out
}

// cpuShare is CPU used per wall-clock second (1.0 = one core busy).
type cpuShare struct {
	name  string
	cores float64
}

// cpuMeter measures, between begin and end, the CPU of each server
// process, of this load generator and of the whole machine.
type cpuMeter struct {
	procs []*child.Proc
	t0    time.Time
	start []float64 // per proc, then self, then machine
	mon   string    // nats-server's monitoring address, or ""
	nats  natsCount // at t0
}

// natsCount is nats-server's message counters (/varz): messages received
// from its clients (publishes, requests, replies) and delivered to them
// (JetStream's PubAcks included).
type natsCount struct {
	InMsgs  int64 `json:"in_msgs"`
	OutMsgs int64 `json:"out_msgs"`
}

// readNATS reads the counters; zero when there is no monitoring port.
func readNATS(mon string) natsCount {
	var n natsCount
	if mon == "" {
		return n
	}
	resp, err := http.Get("http://" + mon + "/varz")
	if err != nil {
		return n
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&n)
	return n
}

func (c *cluster) meter() *cpuMeter {
	m := &cpuMeter{procs: c.servers(), t0: time.Now(), mon: c.natsMon}
	m.nats = readNATS(m.mon)
	for _, p := range m.procs {
		m.start = append(m.start, child.CPUSeconds(strconv.Itoa(p.PID())))
	}
	m.start = append(m.start, child.CPUSeconds("self"), child.MachineBusySeconds())
	return m
}

// end returns each process's share, then "msgbench" (the load
// generator), then "machine" (all processes), and the wall time measured.
func (m *cpuMeter) end() ([]cpuShare, time.Duration) {
	d := time.Since(m.t0)
	n := readNATS(m.mon)
	m.nats = natsCount{n.InMsgs - m.nats.InMsgs, n.OutMsgs - m.nats.OutMsgs}
	wall := d.Seconds()
	var out []cpuShare
	for i, p := range m.procs {
		out = append(out, cpuShare{p.Name, (child.CPUSeconds(strconv.Itoa(p.PID())) - m.start[i]) / wall})
	}
	k := len(m.procs)
	out = append(out, cpuShare{"msgbench", (child.CPUSeconds("self") - m.start[k]) / wall},
		cpuShare{"machine", (child.MachineBusySeconds() - m.start[k+1]) / wall})
	return out, d
}
