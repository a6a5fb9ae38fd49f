// Command filebench is Parley's file-transfer benchmark (make bench,
// scripts/bench.sh). It starts the real binaries from bin/ as separate
// processes on 127.0.0.1 — nats-server with JetStream, redis-server, a
// MinIO server (.tools/bin/minio), auth, presence, messaging, file and one
// gateway storing into that MinIO — registers three users through the Go
// SDK and measures, against the same MinIO in the same run:
//
//   - file-up: upload throughput of one -size file through the gateway (the
//     SDK's OfferFile + Upload: tus PATCH, the whole file in one request,
//     stored as 8 MiB multipart parts, SHA-256 checked) against minio-go
//     PutObject of the same bytes straight to MinIO, once as a stream (one
//     part after another, the gateway's part size: the same shape as the
//     gateway's writes) and once from an io.ReaderAt (minio-go's defaults:
//     4 parts in parallel, 16 MiB each, as for a file on disk).
//   - file-down: download throughput of that file through the gateway (the
//     URL DownloadURL returns) against minio-go GetObject of the very same
//     object. Every downloaded byte is compared with what was uploaded.
//   - file-mem: the gateway's, the file service's and MinIO's memory during
//     the gateway upload: VmRSS sampled every 50 ms and VmHWM.
//   - file-chat: private-message latency (send -> receive) between two users
//     on the gateway at a steady -chat-rate, with no transfer, while the
//     sender uploads files through the gateway as fast as it can, and
//     while it downloads one.
//
// The files are generated (a random pattern, read through io.ReaderAt),
// never held in memory or written anywhere but MinIO, and deleted after
// use; the free space of the work directory's file system is checked first.
// For each transfer the CPU of every process involved, of this process
// (the client side) and of the whole machine is reported. With
// -gateway-bin gatewayprof -profile DIR, CPU profiles of the gateway and of
// this process are saved during the first upload and download.
// The report goes to stdout (and -out); progress to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/parleychat/parley/bench/internal/child"
	"github.com/parleychat/parley/libs/testenv"
)

// scenarios, in the order they run.
var scenarios = []string{"file-up", "file-down", "file-mem", "file-chat"}

type options struct {
	bin, out, only, dataDir string
	quick, keep             bool
	redisServer, minioBin   string
	gatewayBin, profileDir  string
	profileSeconds          time.Duration
	size, chatSize          int64
	rounds                  int
	directParallel, live    bool
	chatRate                float64
	chatDuration            time.Duration
}

func main() {
	var (
		o              options
		size, chatSize string
	)
	flag.StringVar(&o.bin, "bin", "bin", "directory with nats-server, auth, presence, messaging, file and gateway")
	flag.StringVar(&o.out, "out", "", "also write the report to this file")
	flag.StringVar(&o.only, "only", "", "comma-separated scenarios: "+strings.Join(scenarios, ", ")+" (default all)")
	flag.BoolVar(&o.quick, "quick", false, "small files and short levels, a smoke test")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs; MinIO and NATS data)")
	flag.StringVar(&o.dataDir, "data-dir", "", "where the work directory (MinIO's data, NATS, logs) goes (default $TMPDIR or /tmp; /dev/shm takes the disk out of the measurement)")
	flag.StringVar(&o.redisServer, "redis-server", "redis-server", "redis-server binary")
	flag.StringVar(&o.minioBin, "minio", "", "minio server binary (default: $PARLEY_MINIO_BIN, .tools/bin/minio, PATH)")
	flag.StringVar(&o.gatewayBin, "gateway-bin", "gateway", "gateway binary in -bin (gatewayprof for -profile)")
	flag.StringVar(&o.profileDir, "profile", "", "save CPU profiles of the gateway (needs -gateway-bin gatewayprof) and of filebench here during the first upload and download")
	flag.DurationVar(&o.profileSeconds, "profile-seconds", 10*time.Second, "length of each CPU profile")
	flag.StringVar(&size, "size", "5GiB", "file size for file-up, file-down and file-mem (suffixes KiB, MiB, GiB)")
	flag.StringVar(&chatSize, "chat-size", "1GiB", "file-chat: size of each file transferred during the chat levels")
	flag.IntVar(&o.rounds, "rounds", 3, "file-up/file-down: how many times to measure each transfer (the best is compared; -quick: 1)")
	flag.BoolVar(&o.directParallel, "direct-parallel", true, "file-up: also measure minio-go's parallel upload (io.ReaderAt source)")
	flag.BoolVar(&o.live, "live", true, "file-up: also measure the upload to an online recipient (a live file: every part stored twice)")
	flag.Float64Var(&o.chatRate, "chat-rate", 20, "file-chat: messages per second")
	flag.DurationVar(&o.chatDuration, "chat-duration", 30*time.Second, "file-chat: duration of each level")
	flag.Parse()
	if o.quick {
		if !flagSet("size") {
			size = "256MiB"
		}
		if !flagSet("chat-size") {
			chatSize = "128MiB"
		}
		o.chatDuration = min(o.chatDuration, 5*time.Second)
		if !flagSet("rounds") {
			o.rounds = 1
		}
	}
	err := func() error {
		var err error
		if o.size, err = parseSize(size); err != nil {
			return fmt.Errorf("-size: %w", err)
		}
		if o.chatSize, err = parseSize(chatSize); err != nil {
			return fmt.Errorf("-chat-size: %w", err)
		}
		if o.rounds < 1 || o.chatRate <= 0 || o.chatDuration <= 0 || o.profileSeconds < time.Second {
			return errors.New("-rounds, -chat-rate and -chat-duration must be positive, -profile-seconds at least 1s")
		}
		return run(o)
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "filebench:", err)
		os.Exit(1)
	}
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parseSize reads "5GiB", "256MiB", "64KiB" or a number of bytes.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(v * float64(mult)), nil
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	want := map[string]bool{}
	for _, k := range strings.Split(o.only, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		known := false
		for _, s := range scenarios {
			known = known || s == k
		}
		if !known {
			return fmt.Errorf("unknown scenario %q (%s)", k, strings.Join(scenarios, ", "))
		}
		want[k] = true
	}
	if len(want) == 0 {
		for _, s := range scenarios {
			want[s] = true
		}
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	for _, b := range []string{o.gatewayBin, "auth", "presence", "messaging", "file", "nats-server"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return fmt.Errorf("missing %s in %s (run scripts/bench.sh, or make build first): %w", b, bin, err)
		}
	}
	if o.minioBin == "" {
		if o.minioBin, err = testenv.MinIOBinary(); err != nil {
			return err
		}
	}
	if o.profileDir != "" {
		if o.profileDir, err = filepath.Abs(o.profileDir); err != nil {
			return err
		}
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp(o.dataDir, "parley-filebench-")
	if err != nil {
		return err
	}
	if o.keep {
		logf("work directory (kept): %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	rep := &report{opts: o, want: want, env: machine(), started: time.Now()}
	if rep.disk, err = checkDisk(dir, diskNeeded(o, want)); err != nil {
		return err
	}
	logf("%s", rep.disk)
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	ps := &child.Set{Bin: bin, Logs: logs}
	defer func() {
		logf("stopping all processes")
		ps.StopAll()
	}()
	c := &cluster{ps: ps, dir: dir, opts: o}
	logf("starting nats-server, redis-server, minio, auth, presence, messaging, file, %s", o.gatewayBin)
	if err := c.start(ctx); err != nil {
		return err
	}
	// alice uploads and chats with bob; carol stays online (files to her
	// are "live": stored twice while they upload), dave goes offline
	// (files to him are stored once).
	var users []*user
	for _, name := range []string{"alice", "bob", "carol", "dave"} {
		u, err := registerUser(ctx, c, name)
		if err != nil {
			return err
		}
		defer u.client.Close()
		users = append(users, u)
	}
	alice, bob, carol, dave := users[0], users[1], users[2], users[3]
	go drain(alice.client)
	go drain(carol.client)
	dave.client.Close()
	if err := waitOffline(ctx, alice, dave.name); err != nil {
		return err
	}

	src, err := newSource(o.size)
	if err != nil {
		return err
	}
	if want["file-up"] || want["file-down"] || want["file-mem"] {
		t0 := time.Now()
		logf("file of %s: SHA-256 %s (%s to compute)", humanBytes(src.size), src.SHA256(), time.Since(t0).Round(time.Millisecond))
		rep.transfers = runTransfers(ctx, c, o, alice, dave, carol, src, want, logf)
		if rep.transfers.err != nil {
			logf("transfers failed: %v", rep.transfers.err)
		}
	}
	if ctx.Err() == nil && want["file-chat"] {
		cs := src.withSize(o.chatSize)
		cs.SHA256()
		rep.chat = runChat(ctx, c, o, alice, bob, dave, cs, logf)
		if rep.chat.err != nil {
			logf("file-chat failed: %v", rep.chat.err)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	rep.leftover = c.leftover(ctx)
	rep.finished = time.Now()
	if err := child.WriteReport(o.out, rep.write); err != nil {
		return err
	}
	if rep.failed() {
		return errors.New("some transfers failed (see the report)")
	}
	return nil
}

// diskNeeded is what MinIO may hold at once: the gateway's file and the
// direct copy (file-up), or the chat levels' file being downloaded and
// the one being uploaded; plus 1 GiB for MinIO's metadata, NATS and logs.
func diskNeeded(o options, want map[string]bool) int64 {
	var need int64
	if want["file-up"] || want["file-down"] || want["file-mem"] {
		need = o.size
		if want["file-up"] {
			need += o.size
		}
	}
	if want["file-chat"] {
		need = max(need, 2*o.chatSize)
	}
	return need + 1<<30
}

// checkDisk fails when dir's file system has less than need bytes free.
func checkDisk(dir string, need int64) (string, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "", fmt.Errorf("free space of %s: %w", dir, err)
	}
	free := int64(st.Bavail) * st.Bsize
	msg := fmt.Sprintf("disk: %s free in %s, this run needs up to %s", humanBytes(free), filepath.Dir(dir), humanBytes(need))
	if free < need {
		return "", fmt.Errorf("not enough disk space: %s free in %s, the run needs %s (MinIO keeps the files there): free some, choose another -data-dir, or use a smaller -size/-chat-size",
			humanBytes(free), filepath.Dir(dir), humanBytes(need))
	}
	return msg, nil
}
