package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/parleychat/parley/bench/internal/child"
)

// MinIO credentials and the bucket the file service and gateway share.
const (
	minioUser   = "filebench"
	minioSecret = "filebench-secret-key"
	fileBucket  = "parley-files" // the services' default -minio-bucket
	directBkt   = "filebench-direct"
)

// cluster is the multi-process Parley under test: nats-server (JetStream),
// redis-server, MinIO, auth, presence, messaging, file and one gateway,
// each a separate process on 127.0.0.1.
type cluster struct {
	ps   *child.Set
	dir  string // work directory (NATS store, MinIO data)
	opts options

	nats, redis, minio           *child.Proc
	natsURL, redisAddr, minioEP  string
	auth, presence, messaging    *child.Proc
	file                         *child.Proc
	fileAdmin                    string // the file service's admin address (/metrics)
	gw                           *child.Proc
	gwTCP, gwHTTP, gwAdmin, gwPP string // gwPP: gatewayprof's pprof address

	s3 *minio.Client // the direct client, and for finding stored objects
}

// start brings up everything, each process waited for (TCP for NATS and
// Redis, cluster health for MinIO, /readyz for Parley's binaries).
func (c *cluster) start(ctx context.Context) error {
	var err error
	if c.nats, c.natsURL, err = c.ps.StartNATS(ctx, filepath.Join(c.dir, "nats")); err != nil {
		return err
	}
	if c.redis, c.redisAddr, err = c.ps.StartRedis(ctx, c.opts.redisServer); err != nil {
		return err
	}
	if err := c.startMinIO(ctx); err != nil {
		return err
	}

	// Cheap hashing: registering the three users is setup.
	if c.auth, err = c.startService(ctx, "auth", "auth", "PARLEY_ARGON2_MEMORY=1024", "PARLEY_ARGON2_TIME=1",
		"PARLEY_REGISTER_IP_LIMIT=0", "PARLEY_LOGIN_IP_LIMIT=0"); err != nil {
		return err
	}
	if c.presence, err = c.startService(ctx, "presence", "presence", "PARLEY_REDIS_ADDR="+c.redisAddr); err != nil {
		return err
	}
	// file-chat sends -chat-rate messages a second from one user (20 by
	// default), above messaging's per-user rate (60 a minute after a burst
	// of 30): lifted, the chat is what is measured.
	if c.messaging, err = c.startService(ctx, "messaging", "messaging", "PARLEY_MSG_SEND_LIMIT=0"); err != nil {
		return err
	}
	if c.fileAdmin, err = child.FreeAddr(); err != nil {
		return err
	}
	if c.file, err = c.startService(ctx, "file", "file", append(c.storageEnv(), "PARLEY_ADMIN_ADDR="+c.fileAdmin)...); err != nil {
		return err
	}
	return c.startGateway(ctx)
}

// storageEnv points a file service or gateway at the MinIO bucket.
func (c *cluster) storageEnv() []string {
	return []string{"PARLEY_MINIO_ENDPOINT=" + c.minioEP, "PARLEY_MINIO_ACCESS_KEY=" + minioUser,
		"PARLEY_MINIO_SECRET_KEY=" + minioSecret, "PARLEY_MINIO_BUCKET=" + fileBucket}
}

// startMinIO runs the MinIO server binary (a separate program: it is
// AGPL and never imported) on a fresh data directory and waits for
// /minio/health/cluster, which answers 200 only once the object layer
// serves requests.
func (c *cluster) startMinIO(ctx context.Context) error {
	var console string
	var err error
	if c.minioEP, err = child.FreeAddr(); err != nil {
		return err
	}
	if console, err = child.FreeAddr(); err != nil {
		return err
	}
	data := filepath.Join(c.dir, "minio")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return err
	}
	c.minio, err = c.ps.Start("minio", c.opts.minioBin,
		[]string{"MINIO_ROOT_USER=" + minioUser, "MINIO_ROOT_PASSWORD=" + minioSecret, "MINIO_BROWSER=off", "MINIO_UPDATE=off"},
		"server", data, "--address", c.minioEP, "--console-address", console)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c.minio.Exited() {
			return fmt.Errorf("minio exited while starting:\n%s", c.minio.Tail(20))
		}
		resp, err := hc.Get("http://" + c.minioEP + "/minio/health/cluster")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("minio not ready at %s within 60s:\n%s", c.minioEP, c.minio.Tail(20))
		}
		if err := child.Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	c.s3, err = minio.New(c.minioEP, &minio.Options{Creds: credentials.NewStaticV4(minioUser, minioSecret, "")})
	if err != nil {
		return err
	}
	return c.s3.MakeBucket(ctx, directBkt, minio.MakeBucketOptions{})
}

// startService starts a Parley service binary with its own admin port and
// waits for /readyz.
func (c *cluster) startService(ctx context.Context, name, binary string, env ...string) (*child.Proc, error) {
	admin, err := child.FreeAddr()
	if err != nil {
		return nil, err
	}
	for _, e := range env {
		if a, ok := strings.CutPrefix(e, "PARLEY_ADMIN_ADDR="); ok {
			admin = a // the caller wants to know it
		}
	}
	env = append([]string{"PARLEY_NATS_URL=" + c.natsURL, "PARLEY_ADMIN_ADDR=" + admin}, env...)
	p, err := c.ps.Start(name, binary, env)
	if err != nil {
		return nil, err
	}
	return p, child.WaitReady(ctx, p, admin, 60*time.Second)
}

func (c *cluster) startGateway(ctx context.Context) error {
	for _, a := range []*string{&c.gwTCP, &c.gwHTTP, &c.gwAdmin} {
		var err error
		if *a, err = child.FreeAddr(); err != nil {
			return err
		}
	}
	env := append([]string{"PARLEY_NATS_URL=" + c.natsURL, "PARLEY_ADMIN_ADDR=" + c.gwAdmin,
		"PARLEY_TCP_ADDR=" + c.gwTCP, "PARLEY_HTTP_ADDR=" + c.gwHTTP, "PARLEY_GATEWAY_ID=gw1"}, c.storageEnv()...)
	if c.opts.profileDir != "" {
		var err error
		if c.gwPP, err = child.FreeAddr(); err != nil {
			return err
		}
		// gatewayprof samples every 64th allocated byte for connbench's
		// heap profiles, which costs more CPU than a transfer: back to
		// Go's default.
		env = append(env, "PARLEY_PPROF_ADDR="+c.gwPP, "PARLEY_MEM_PROFILE_RATE=524288")
	}
	p, err := c.ps.Start("gateway", c.opts.gatewayBin, env)
	if err != nil {
		return err
	}
	c.gw = p
	return child.WaitReady(ctx, p, c.gwAdmin, 60*time.Second)
}

// servers are the processes whose CPU is reported, in report order
// (auth, presence and Redis play no part in a transfer).
func (c *cluster) servers() []*child.Proc {
	return []*child.Proc{c.gw, c.file, c.minio, c.nats, c.messaging}
}

// leftover describes what the buckets still hold: every file of the run
// was deleted (tus DELETE, RemoveObject), so anything here is storage the
// services did not release.
func (c *cluster) leftover(ctx context.Context) string {
	var objects, bytes, uploads int64
	for _, b := range []string{fileBucket, directBkt} {
		for oi := range c.s3.ListObjects(ctx, b, minio.ListObjectsOptions{Recursive: true}) {
			if oi.Err != nil {
				return "(listing failed: " + oi.Err.Error() + ")"
			}
			objects++
			bytes += oi.Size
		}
		for u := range c.s3.ListIncompleteUploads(ctx, b, "", true) {
			if u.Err != nil {
				return "(listing uploads failed: " + u.Err.Error() + ")"
			}
			uploads++
		}
	}
	return fmt.Sprintf("%d objects (%s), %d unfinished multipart uploads", objects, humanBytes(bytes), uploads)
}

// rpcTime is the file service's handling of one subject so far: requests
// and total seconds (parley_rpc_request_duration_seconds from /metrics).
type rpcTime struct {
	count   int64
	seconds float64
}

// fileRPC reads the file service's request count and time for subj.
func (c *cluster) fileRPC(ctx context.Context, subj string) (rpcTime, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.fileAdmin+"/metrics", nil)
	if err != nil {
		return rpcTime{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return rpcTime{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return rpcTime{}, err
	}
	var t rpcTime
	label := `subject="` + subj + `"`
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, "{")
		if !ok || !strings.Contains(rest, label) {
			continue
		}
		_, v, _ := strings.Cut(rest, "} ")
		switch name {
		case "parley_rpc_request_duration_seconds_sum":
			t.seconds, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
		case "parley_rpc_request_duration_seconds_count":
			t.count, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return t, nil
}

// countObjects counts the objects under prefix (-1 if listing failed).
func (c *cluster) countObjects(ctx context.Context, bucket, prefix string) int64 {
	var n int64
	for oi := range c.s3.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return -1
		}
		n++
	}
	return n
}
