package main

import (
	"github.com/parleychat/parley/bench/internal/child"

	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
)

// metrics are the Prometheus samples of one /metrics scrape, summed over
// labels per metric name.
type metrics map[string]float64

// scrape reads http://admin/metrics (text exposition format).
func scrape(admin string) (metrics, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: %s", admin, resp.Status)
	}
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		name := line[:sp]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		m[name] += v
	}
	return m, sc.Err()
}

// sample is a gateway's memory at one moment.
type sample struct {
	rss        int64   // VmRSS
	heapInuse  float64 // go_memstats_heap_inuse_bytes
	stackInuse float64 // go_memstats_stack_inuse_bytes
	sys        float64 // go_memstats_sys_bytes
	goroutines float64 // go_goroutines
	conns      float64 // parley_gateway_connections (all transports)
	authed     float64 // parley_gateway_authenticated_connections
}

func sampleGateway(g *gateway) (sample, error) {
	m, err := scrape(g.admin)
	if err != nil {
		return sample{}, err
	}
	return sample{
		rss:        child.RSSBytes(g.PID()),
		heapInuse:  m["go_memstats_heap_inuse_bytes"],
		stackInuse: m["go_memstats_stack_inuse_bytes"],
		sys:        m["go_memstats_sys_bytes"],
		goroutines: m["go_goroutines"],
		conns:      m["parley_gateway_connections"],
		authed:     m["parley_gateway_authenticated_connections"],
	}, nil
}

// presenceOnline asks the presence service for its online list (the same
// request the gateways make), page by page when presence pages it, and
// returns how many distinct users it holds, their connections in total, and
// the encoded size of the largest reply (what must fit in NATS's
// max_payload).
func (c *cluster) presenceOnline(ctx context.Context) (users, sessions, maxReply int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	seen := map[string]uint32{}
	req := &internalv1.PresenceListRequest{Limit: 1000}
	for {
		reply := new(internalv1.PresenceListReply)
		if err := rpc.Request(ctx, c.nc, subject.PresenceList, nil, req, reply); err != nil {
			return 0, 0, 0, err
		}
		maxReply = max(maxReply, proto.Size(reply))
		// Pages may repeat a user (Redis rehashing during the scan).
		for _, u := range reply.GetUsers() {
			seen[u.GetUserId()] = u.GetSessions()
		}
		if reply.GetNextCursor() == "" {
			break
		}
		req = &internalv1.PresenceListRequest{Cursor: reply.GetNextCursor(), Limit: 1000}
	}
	for _, n := range seen {
		sessions += int(n)
	}
	return len(seen), sessions, maxReply, nil
}

// waitPresenceEmpty waits until presence lists nobody online, so the next
// scenario starts from zero.
func (c *cluster) waitPresenceEmpty(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last int
	for time.Now().Before(deadline) {
		n, _, _, err := c.presenceOnline(ctx)
		if err == nil && n == 0 {
			return nil
		}
		last = n
		if err := child.Sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("presence still lists %d users online after %s", last, within)
}

// profileGateway saves a gatewayprof's heap profile (taken after a forced
// GC), its text form with runtime.MemStats, and its goroutine profile into
// dir, then records the RSS after that GC.
func profileGateway(ctx context.Context, g *gateway, dir string) error {
	if g.pprof == "" {
		return fmt.Errorf("no pprof address: run with -gateway-bin gatewayprof")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for file, path := range map[string]string{
		"heap.pb.gz":     "/debug/pprof/heap?gc=1",
		"heap.txt":       "/debug/pprof/heap?debug=1",
		"goroutines.txt": "/debug/pprof/goroutine?debug=1",
	} {
		if err := fetch(ctx, "http://"+g.pprof+path, filepath.Join(dir, file)); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "rss-after-gc.txt"), []byte(fmt.Sprintf("%d\n", child.RSSBytes(g.PID()))), 0o644)
}

func fetch(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
