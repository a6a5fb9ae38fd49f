package sdktest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/standalone/server"
)

// TestLiveDownloadFollowsEvents: a download held open while its upload
// stalls does not poll the file service; it asks again (`open`) when the
// file service announces progress (subject.FileProgress), and only then.
// The test watches the subjects on the embedded NATS: a plain subscription
// on subject.FileOpen gets a copy of every open request.
func TestLiveDownloadFollowsEvents(t *testing.T) {
	natsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	_, alice, bob := aliceAndBob(t, func(c *server.Config) {
		c.NATSListen = natsAddr
		c.Gateway.LiveFallback = time.Hour // lost events are not under test: no event, no open
	})
	ctx := ctxT(t)
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	data, sum := randomData(t, 20<<20+999) // parts of 8 MiB
	offer, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "live.bin", Size: uint64(len(data)), SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	id := offer.File.ID
	// Every open of this file, and every progress event, in order.
	var (
		mu  sync.Mutex
		log []string
	)
	opens := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, e := range log {
			if e == "open" {
				n++
			}
		}
		return n
	}
	if _, err := nc.Subscribe(subject.FileOpen, func(m *nats.Msg) {
		var req internalv1.FileOpenRequest
		if proto.Unmarshal(m.Data, &req) == nil && req.GetFileId() == id {
			mu.Lock()
			log = append(log, "open")
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe(subject.FileProgress(id), func(*nats.Msg) {
		mu.Lock()
		log = append(log, "progress")
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	src := &gatedReaderAt{data: data, gate: 10 << 20, open: make(chan struct{})}
	uploaded := make(chan error, 1)
	go func() { uploaded <- alice.Upload(ctx, offer, src, parley.UploadOptions{}) }()
	if err := bob.AnswerFile(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	var got atomic.Uint64
	downloaded := make(chan error, 1)
	path := filepath.Join(t.TempDir(), "live.bin")
	go func() {
		_, err := bob.DownloadTo(ctx, id, path, func(done, _ uint64) { got.Store(done) })
		downloaded <- err
	}()
	testenv.Eventually(t, wait, "bob to receive the stored part while the upload stalls", func() bool {
		return got.Load() >= 8<<20
	})
	// The download now waits for alice. A poll every 200 ms would ask
	// several times in a second; waiting on events, it asks not once.
	held := opens()
	mu.Lock()
	holdAt := len(log)
	mu.Unlock()
	time.Sleep(time.Second)
	if n := opens() - held; n != 0 {
		t.Fatalf("the held download asked the file service %d times in a second without any progress", n)
	}

	close(src.open)
	if err := <-uploaded; err != nil {
		t.Fatalf("upload: %v", err)
	}
	if err := <-downloaded; err != nil {
		t.Fatalf("live download: %v", err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, data) {
		t.Fatal("live download differs from the file")
	}
	// From the hold on, every open follows a progress event: at most one
	// per event (events coalesce), plus the retries a live download makes
	// when a part's readable copy is removed under it at the end.
	mu.Lock()
	defer mu.Unlock()
	events, asked := 0, 0
	for _, e := range log[holdAt:] {
		if e == "progress" {
			events++
		} else {
			asked++
		}
	}
	if events == 0 || asked > events+2 {
		t.Fatalf("after the hold: %d opens for %d progress events (%v)", asked, events, log)
	}
}
