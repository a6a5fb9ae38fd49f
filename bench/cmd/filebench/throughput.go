package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/parleychat/parley/bench/internal/child"
	"github.com/parleychat/parley/libs/objkey"
	"github.com/parleychat/parley/libs/subject"
)

// roundResult is one round of the transfer scenarios: the same file
// through the gateway and directly to MinIO, up and down.
type roundResult struct {
	up, down []transfer
}

// transferResult is the file-up, file-down and file-mem scenarios.
type transferResult struct {
	size, partSize int64
	rounds         []roundResult
	profiles       []string // files written with -profile
	err            error
}

// Names of the transfer rows (the report finds rows by them).
const (
	viaGateway     = "gateway"
	viaGatewayLive = "gateway, live"
	directStream   = "direct, streamed"
	directParallel = "direct, parallel"
	directWhole    = "direct"
	directRange    = "direct, Range"
)

// runTransfers measures, per round: the upload of src through the
// gateway (alice offers it to offline, a user who is not connected, so
// each part is stored once) with the SDK, sampling the gateway's, the file
// service's and MinIO's memory; (file-down) its download through the
// gateway and of the very same object directly with GetObject (odd rounds
// the gateway first, even rounds last); (file-up) the same bytes uploaded
// directly with minio-go PutObject, streamed and parallel; then (file-up,
// -live) the upload to online, a connected user, for whom the file service
// makes the file "live": the gateway stores every part a second time as a
// readable object, so a download can start before the upload ends. Before
// each timed transfer it lets MinIO and the page cache settle. Every
// object is deleted in its round; the disk holds at most two copies.
func runTransfers(ctx context.Context, c *cluster, o options, a, offline, online *user, src *source, want map[string]bool, logf func(string, ...any)) *transferResult {
	r := &transferResult{size: src.size}
	// timed runs one transfer after letting the machine settle.
	timed := func(tag, name string, do func() error) transfer {
		waited := settle(ctx, c.minio, 20*time.Second)
		meter := newCPUMeter(c.servers())
		t0 := time.Now()
		err := do()
		t := transfer{name: name, bytes: src.size, elapsed: time.Since(t0), cpu: meter.end(), err: err}
		logf("%s: %s: %s (%.1f MB/s; settled %s before) %s", tag, name, t.elapsed.Round(time.Millisecond), t.mbps(),
			waited.Round(100*time.Millisecond), errText(err))
		return t
	}
	// gatewayUpload uploads src to the user named to, with memory, commit
	// and (first round) CPU profiles; the time covers the upload only.
	gatewayUpload := func(tag, name string, to *user, first bool) (*gatewayFile, transfer) {
		var (
			f                   *gatewayFile
			prof                *profile
			sampler             *memSampler
			before              rpcTime
			berr                error
			liveWG              sync.WaitGroup
			liveSeen, liveCheck = int64(-1), make(chan struct{}, 1)
		)
		// Half-way, count the readable copies of the parts stored so far:
		// they show whether the file service made the file live.
		half := func(sent, total uint64) {
			if sent >= total/2 {
				select {
				case liveCheck <- struct{}{}:
				default:
				}
			}
		}
		offered := func(fi *gatewayFile) {
			liveWG.Add(1)
			go func() {
				defer liveWG.Done()
				select {
				case <-liveCheck:
					liveSeen = c.countObjects(ctx, fileBucket, objkey.LivePrefix(fi.id))
				case <-ctx.Done():
				}
			}()
		}
		what := "upload"
		if name == viaGatewayLive {
			what = "upload-live"
		}
		t := timed(tag, name+" upload", func() error {
			prof = c.startProfile(ctx, o, first, what)
			sampler = sampleMemory([]*child.Proc{c.gw, c.file, c.minio}, 50*time.Millisecond)
			before, berr = c.fileRPC(ctx, subject.FileUploadCommit)
			var err error
			f, err = uploadViaGateway(ctx, a, to.name, src, half, offered)
			return err
		})
		t.name = name
		t.mem = sampler.stop()
		select { // releases the counter if half-way was never reported
		case liveCheck <- struct{}{}:
		default:
		}
		liveWG.Wait()
		t.liveParts = liveSeen
		if after, aerr := c.fileRPC(ctx, subject.FileUploadCommit); berr == nil && aerr == nil {
			t.commits = rpcTime{count: after.count - before.count, seconds: after.seconds - before.seconds}
		}
		r.profiles = append(r.profiles, prof.wait()...)
		return f, t
	}

	for round := 1; round <= o.rounds && ctx.Err() == nil; round++ {
		var rr roundResult
		tag := fmt.Sprintf("round %d/%d", round, o.rounds)

		f, up := gatewayUpload(tag, viaGateway, offline, round == 1)
		rr.up = append(rr.up, up)
		if up.err != nil {
			r.err = up.err
			if f != nil {
				_ = deleteViaGateway(context.WithoutCancel(ctx), a, f.id)
			}
			r.rounds = append(r.rounds, rr)
			return r
		}
		r.partSize = f.partSize

		if want["file-down"] {
			order := []string{viaGateway, directWhole, directRange}
			if round%2 == 0 {
				order = []string{directRange, directWhole, viaGateway}
			}
			for _, name := range order {
				var t transfer
				switch name {
				case viaGateway:
					var prof *profile
					t = timed(tag, viaGateway+" download", func() error {
						prof = c.startProfile(ctx, o, round == 1, "download")
						return downloadViaGateway(ctx, a, f.id, src, nil)
					})
					r.profiles = append(r.profiles, prof.wait()...)
				default:
					t = timed(tag, name+" GetObject", func() error {
						return getDirect(ctx, c.s3, fileBucket, f.key, src, name == directRange)
					})
				}
				t.name = name
				rr.down = append(rr.down, t)
			}
			// Report rows in one order whatever the order of the round.
			slices.SortStableFunc(rr.down, func(x, y transfer) int { return rank(x.name) - rank(y.name) })
		}

		if want["file-up"] {
			for _, parallel := range []bool{false, true} {
				if parallel && !o.directParallel {
					continue
				}
				name, key := directStream, fmt.Sprintf("stream-%d", round)
				if parallel {
					name, key = directParallel, fmt.Sprintf("parallel-%d", round)
				}
				t := timed(tag, name+" PutObject", func() error {
					return putDirect(ctx, c.s3, key, src, parallel, f.partSize)
				})
				t.name = name
				rr.up = append(rr.up, t)
				if rerr := c.s3.RemoveObject(context.WithoutCancel(ctx), directBkt, key, minio.RemoveObjectOptions{}); rerr != nil {
					logf("remove %s: %v", key, rerr)
				}
			}
		}
		if err := deleteViaGateway(context.WithoutCancel(ctx), a, f.id); err != nil {
			logf("delete %s: %v", f.id, err)
		}

		if want["file-up"] && o.live {
			lf, t := gatewayUpload(tag, viaGatewayLive, online, round == 1)
			rr.up = append(rr.up, t)
			if lf != nil {
				if err := deleteViaGateway(context.WithoutCancel(ctx), a, lf.id); err != nil {
					logf("delete %s: %v", lf.id, err)
				}
			}
		}
		slices.SortStableFunc(rr.up, func(x, y transfer) int { return rank(x.name) - rank(y.name) })
		r.rounds = append(r.rounds, rr)
	}
	return r
}

// rank orders the rows of a round's table.
func rank(name string) int {
	return slices.Index([]string{viaGateway, viaGatewayLive, directWhole, directRange, directStream, directParallel}, name)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return "ERROR: " + err.Error()
}

// profile is a CPU profile being taken of the gateway (gatewayprof's
// /debug/pprof/profile) and of this process (the client side) for
// -profile-seconds.
type profile struct {
	done  chan struct{}
	files []string
}

// startProfile starts profiling when -profile is set and first holds.
func (c *cluster) startProfile(ctx context.Context, o options, first bool, what string) *profile {
	p := &profile{done: make(chan struct{})}
	if o.profileDir == "" || !first {
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		self := filepath.Join(o.profileDir, "filebench-"+what+".cpu.pb.gz")
		if f, err := os.Create(self); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer func() { pprof.StopCPUProfile(); f.Close(); p.files = append(p.files, self) }()
			} else {
				f.Close()
			}
		}
		if c.gwPP == "" {
			_ = child.Sleep(ctx, o.profileSeconds)
			return
		}
		gwFile := filepath.Join(o.profileDir, "gateway-"+what+".cpu.pb.gz")
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", c.gwPP, int(o.profileSeconds.Seconds()))
		if err := fetch(ctx, url, gwFile); err == nil {
			p.files = append(p.files, gwFile)
		}
	}()
	return p
}

// wait returns the profile files once the profile window has ended.
func (p *profile) wait() []string {
	<-p.done
	return p.files
}

// fetch saves what url answers into path.
func fetch(ctx context.Context, url, path string) error {
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
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
