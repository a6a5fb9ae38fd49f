package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/parleychat/parley/bench/internal/child"
)

// cluster is the multi-process Parley under test: nats-server (JetStream),
// redis-server, auth, presence, messaging, media-relay and the gateways
// with their UDP media ports.
type cluster struct {
	ps   *child.Set
	dir  string
	opts options

	nats, redis, auth, presence, messaging *child.Proc
	relay                                  *child.Proc
	natsURL, redisAddr                     string
	gateways                               []*gateway
}

type gateway struct {
	*child.Proc
	tcp, admin, udp string
}

func (c *cluster) start(ctx context.Context) error {
	var err error
	if c.nats, c.natsURL, err = c.ps.StartNATS(ctx, filepath.Join(c.dir, "nats")); err != nil {
		return err
	}
	if c.redis, c.redisAddr, err = c.ps.StartRedis(ctx, c.opts.redisServer); err != nil {
		return err
	}
	// Cheap hashing and no per-IP limits: registering the benchmark's
	// users is setup, and every client comes from 127.0.0.1.
	if c.auth, err = c.startService(ctx, "auth", "auth", "PARLEY_ARGON2_MEMORY=1024", "PARLEY_ARGON2_TIME=1",
		"PARLEY_REGISTER_IP_LIMIT=0", "PARLEY_LOGIN_IP_LIMIT=0"); err != nil {
		return err
	}
	if c.presence, err = c.startService(ctx, "presence", "presence", "PARLEY_REDIS_ADDR="+c.redisAddr); err != nil {
		return err
	}
	if c.messaging, err = c.startService(ctx, "messaging", "messaging"); err != nil {
		return err
	}
	if c.relay, err = c.startService(ctx, "media-relay", "media-relay", "PARLEY_RELAY_ID=relay1",
		"PARLEY_RELAY_MAX_SPEAKERS="+strconv.Itoa(c.opts.maxSpeakers)); err != nil {
		return err
	}
	for i := range c.opts.gateways {
		g, err := c.startGateway(ctx, fmt.Sprintf("gw%d", i+1))
		if err != nil {
			return err
		}
		c.gateways = append(c.gateways, g)
	}
	return nil
}

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

func (c *cluster) startGateway(ctx context.Context, id string) (*gateway, error) {
	g := &gateway{}
	var httpAddr string
	for _, a := range []*string{&g.tcp, &g.admin, &httpAddr} {
		var err error
		if *a, err = child.FreeAddr(); err != nil {
			return nil, err
		}
	}
	port, err := freeUDPPort()
	if err != nil {
		return nil, err
	}
	g.udp = fmt.Sprintf("127.0.0.1:%d", port)
	env := []string{"PARLEY_NATS_URL=" + c.natsURL, "PARLEY_ADMIN_ADDR=" + g.admin,
		"PARLEY_TCP_ADDR=" + g.tcp, "PARLEY_HTTP_ADDR=" + httpAddr, "PARLEY_UDP_ADDR=" + g.udp, "PARLEY_GATEWAY_ID=" + id}
	p, err := c.ps.Start(id, "gateway", env)
	if err != nil {
		return nil, err
	}
	g.Proc = p
	return g, child.WaitReady(ctx, p, g.admin, 30*time.Second)
}

// mediaPath lists the processes a media packet goes through (their CPU is
// the server's cost per packet): the gateways, nats-server, media-relay.
func (c *cluster) mediaPath() []*child.Proc {
	out := []*child.Proc{}
	for _, g := range c.gateways {
		out = append(out, g.Proc)
	}
	return append(out, c.nats, c.relay)
}

// others are the processes not on the media path (reported, expected idle).
func (c *cluster) others() []*child.Proc {
	return []*child.Proc{c.redis, c.auth, c.presence, c.messaging}
}

// cpuMeter reads CPU seconds of processes (and of this process, "self",
// and the machine) at the start and end of a window.
type cpuMeter struct {
	procs []*child.Proc
	t0    time.Time
	start []float64 // per proc, then self, then machine
}

func newMeter(procs []*child.Proc) *cpuMeter {
	m := &cpuMeter{procs: procs, t0: time.Now()}
	for _, p := range procs {
		m.start = append(m.start, child.CPUSeconds(strconv.Itoa(p.PID())))
	}
	m.start = append(m.start, child.CPUSeconds("self"), child.MachineBusySeconds())
	return m
}

// cpuUse is one process's CPU over the window: seconds, and cores (seconds
// per wall-clock second).
type cpuUse struct {
	name        string
	secs, cores float64
}

// end returns each process's use, then "callbench" (the load generator),
// then "machine".
func (m *cpuMeter) end() []cpuUse {
	wall := time.Since(m.t0).Seconds()
	var out []cpuUse
	for i, p := range m.procs {
		s := child.CPUSeconds(strconv.Itoa(p.PID())) - m.start[i]
		out = append(out, cpuUse{p.Name, s, s / wall})
	}
	n := len(m.procs)
	self := child.CPUSeconds("self") - m.start[n]
	mach := child.MachineBusySeconds() - m.start[n+1]
	return append(out, cpuUse{"callbench", self, self / wall}, cpuUse{"machine", mach, mach / wall})
}
