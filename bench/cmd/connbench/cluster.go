package main

import (
	"github.com/parleychat/parley/bench/internal/child"

	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// cluster is the multi-process Parley under test: one nats-server, one
// redis-server, auth, presence and the gateways of the current scenario.
type cluster struct {
	ps   *child.Set
	dir  string // work directory (NATS store, TLS files, token files)
	opts options

	nats      *child.Proc
	natsURL   string
	nc        *nats.Conn // the orchestrator's own connection (presence checks)
	redis     *child.Proc
	redisAddr string
	auth      *child.Proc
	authAdmin string
	presence  *child.Proc
	tlsCert   string
	tlsKey    string
}

// gateway is one running gateway replica.
type gateway struct {
	*child.Proc
	id               string
	tcp, http, admin string
	tls              bool
	pprof            string // gatewayprof's pprof address, with -profile
}

func (g *gateway) wsURL() string { return "ws://" + g.http + "/v1/ws" }

// startInfra starts nats-server and redis-server, then connects to NATS.
func (c *cluster) startInfra(ctx context.Context) error {
	// nats-server's default max_payload is 1 MB; presence pages its list
	// (at most ~36 KiB a page), so the default is what the bench runs with.
	conf := filepath.Join(c.dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("max_payload: %d\n", c.opts.natsMaxPayload)), 0o600); err != nil {
		return err
	}
	var err error
	if c.nats, c.natsURL, err = c.ps.StartNATS(ctx, filepath.Join(c.dir, "nats"), "-c", conf); err != nil {
		return err
	}
	c.nc, err = nats.Connect(c.natsURL, nats.Name("connbench"))
	if err != nil {
		return fmt.Errorf("connect to nats-server: %w", err)
	}

	c.redis, c.redisAddr, err = c.ps.StartRedis(ctx, c.opts.redisServer)
	return err
}

// startAuth starts auth. cheap selects the cheap argon2id parameters used
// to register many users quickly; otherwise auth runs with its defaults.
func (c *cluster) startAuth(ctx context.Context, name string, cheap bool) error {
	admin, err := child.FreeAddr()
	if err != nil {
		return err
	}
	env := []string{"PARLEY_NATS_URL=" + c.natsURL, "PARLEY_ADMIN_ADDR=" + admin,
		"PARLEY_REGISTER_IP_LIMIT=0", "PARLEY_LOGIN_IP_LIMIT=0"}
	if cheap {
		env = append(env, "PARLEY_ARGON2_MEMORY=1024", "PARLEY_ARGON2_TIME=1")
	}
	c.auth, err = c.ps.Start(name, "auth", env)
	if err != nil {
		return err
	}
	c.authAdmin = admin
	return child.WaitReady(ctx, c.auth, admin, 30*time.Second)
}

func (c *cluster) startPresence(ctx context.Context) error {
	admin, err := child.FreeAddr()
	if err != nil {
		return err
	}
	c.presence, err = c.ps.Start("presence", "presence", []string{"PARLEY_NATS_URL=" + c.natsURL,
		"PARLEY_ADMIN_ADDR=" + admin, "PARLEY_REDIS_ADDR=" + c.redisAddr})
	if err != nil {
		return err
	}
	return child.WaitReady(ctx, c.presence, admin, 30*time.Second)
}

// startGateway starts one gateway replica with the given id.
func (c *cluster) startGateway(ctx context.Context, id string, useTLS bool) (*gateway, error) {
	g := &gateway{id: id, tls: useTLS}
	for _, a := range []*string{&g.tcp, &g.http, &g.admin} {
		var err error
		if *a, err = child.FreeAddr(); err != nil {
			return nil, err
		}
	}
	env := []string{"PARLEY_NATS_URL=" + c.natsURL, "PARLEY_ADMIN_ADDR=" + g.admin,
		"PARLEY_TCP_ADDR=" + g.tcp, "PARLEY_HTTP_ADDR=" + g.http, "PARLEY_GATEWAY_ID=" + id,
		// Any free media port: the default one is taken by the first
		// gateway of a multi-gateway scenario.
		"PARLEY_UDP_ADDR=127.0.0.1:0"}
	if useTLS {
		if err := c.ensureCert(); err != nil {
			return nil, err
		}
		env = append(env, "PARLEY_TLS_CERT="+c.tlsCert, "PARLEY_TLS_KEY="+c.tlsKey)
	}
	if c.opts.profileDir != "" {
		var err error
		if g.pprof, err = child.FreeAddr(); err != nil {
			return nil, err
		}
		env = append(env, "PARLEY_PPROF_ADDR="+g.pprof)
	}
	p, err := c.ps.Start(id, c.opts.gatewayBin, env)
	if err != nil {
		return nil, err
	}
	g.Proc = p
	return g, child.WaitReady(ctx, p, g.admin, 30*time.Second)
}

// ensureCert writes a self-signed certificate for 127.0.0.1 and
// localhost (child.SelfSignedCert), once.
func (c *cluster) ensureCert() error {
	if c.tlsCert != "" {
		return nil
	}
	var err error
	c.tlsCert, c.tlsKey, err = child.SelfSignedCert(c.dir)
	return err
}

// redisUsedMemory asks redis-server for INFO memory's used_memory.
func (c *cluster) redisUsedMemory() int64 {
	conn, err := net.DialTimeout("tcp", c.redisAddr, 5*time.Second)
	if err != nil {
		return -1
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n")); err != nil {
		return -1
	}
	// The reply is one bulk string: "$<len>\r\n" then "field:value\r\n" lines.
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "used_memory:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return -1
}
