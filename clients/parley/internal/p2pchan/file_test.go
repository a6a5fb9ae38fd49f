package p2pchan

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// sink is a receiver's OnFile: it accepts into dir (or rejects) and
// records how each attempt ended.
type sink struct {
	dir    string
	reject string // non-empty: reject with this reason

	mu     sync.Mutex
	offers []FileOffer
	ends   []fileEnd
	endCh  chan fileEnd
}

type fileEnd struct {
	offer FileOffer
	path  string
	err   error
	held  int64 // the partial's size when the attempt ended (resumable)
}

func newSink(t *testing.T, s *side) *sink {
	k := &sink{dir: t.TempDir(), endCh: make(chan fileEnd, 100)}
	s.cfg.OnFile = k.onFile
	return k
}

func (k *sink) onFile(_ context.Context, o FileOffer) FileDecision {
	k.mu.Lock()
	k.offers = append(k.offers, o)
	k.mu.Unlock()
	if k.reject != "" {
		return FileDecision{Reason: k.reject}
	}
	return FileDecision{Accept: true, Dir: k.dir, Done: func(path string, err error) {
		e := fileEnd{offer: o, path: path, err: err}
		if st, serr := os.Stat(PartPath(k.dir, o.Name, o.TransferID)); serr == nil {
			e.held = st.Size()
		}
		k.mu.Lock()
		k.ends = append(k.ends, e)
		k.mu.Unlock()
		k.endCh <- e
	}}
}

func (k *sink) next(t *testing.T) fileEnd {
	t.Helper()
	select {
	case e := <-k.endCh:
		return e
	case <-testCtx(t).Done():
		t.Fatal("no file attempt ended")
	}
	return fileEnd{}
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// countingReader counts the bytes SendFile reads.
type countingReader struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// attempts records SendFile's progress: each attempt starts with a call
// at the offset the receiver answered (a call not above the last one),
// then one call per write, always higher.
type attempts struct {
	mu     sync.Mutex
	cr     *countingReader
	prev   int64
	starts []attemptStart
	onCall func(done int64)
}

type attemptStart struct {
	offset int64
	read   int64 // bytes read by then
}

func (a *attempts) progress(done, _ int64) {
	a.mu.Lock()
	if len(a.starts) == 0 || done <= a.prev {
		a.starts = append(a.starts, attemptStart{done, a.cr.n.Load()})
	}
	a.prev = done
	f := a.onCall
	a.mu.Unlock()
	if f != nil {
		f(done)
	}
}

func (a *attempts) last() attemptStart {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.starts[len(a.starts)-1]
}

func (a *attempts) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.starts)
}

func checkReceived(t *testing.T, e fileEnd, want []byte) {
	t.Helper()
	if e.err != nil {
		t.Fatalf("receiver: %v", e.err)
	}
	got, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("received %d bytes that differ from the %d sent", len(got), len(want))
	}
	ents, _ := os.ReadDir(filepath.Dir(e.path))
	for _, en := range ents {
		if strings.Contains(en.Name(), ".part") {
			t.Errorf("leftover %s", en.Name())
		}
	}
}

func TestFileTransfer(t *testing.T) {
	a, b := newSide(t), newSide(t)
	k := newSink(t, b)
	var recvProgress atomic.Int64
	b.cfg.OnFile = func(ctx context.Context, o FileOffer) FileDecision {
		d := k.onFile(ctx, o)
		d.Progress = func(n, _ int64) { recvProgress.Store(n) }
		return d
	}
	ca, _ := connect(t, a, b, nil)
	ctx := testCtx(t)

	data := randomBytes(t, 6<<20+12345)
	src := filepath.Join(t.TempDir(), "holiday photos.tar")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	err := ca.SendFilePath(ctx, src, FileOptions{TransferID: NewID(), MediaType: "application/x-tar",
		Progress: func(n, total int64) {
			if total != int64(len(data)) {
				t.Errorf("progress total %d", total)
			}
			sent.Store(n)
		}})
	if err != nil {
		t.Fatal(err)
	}
	e := k.next(t)
	checkReceived(t, e, data)
	if filepath.Base(e.path) != "holiday photos.tar" {
		t.Errorf("saved as %s", e.path)
	}
	sum := sha256.Sum256(data)
	k.mu.Lock()
	o := k.offers[0]
	k.mu.Unlock()
	if o.Size != int64(len(data)) || !bytes.Equal(o.SHA256, sum[:]) || o.MediaType != "application/x-tar" {
		t.Errorf("offer %+v", o)
	}
	if sent.Load() != int64(len(data)) || recvProgress.Load() != int64(len(data)) {
		t.Errorf("progress ended at %d sent, %d received", sent.Load(), recvProgress.Load())
	}

	// The same name again: never overwritten, a free name instead. A name
	// with a path is cut to its last element. An empty file works.
	if err := ca.SendFile(ctx, bytes.NewReader(data[:1000]), 1000, FileOptions{TransferID: NewID(), Name: "../../holiday photos.tar"}); err != nil {
		t.Fatal(err)
	}
	e = k.next(t)
	checkReceived(t, e, data[:1000])
	if filepath.Base(e.path) != "holiday photos (1).tar" || filepath.Dir(e.path) != k.dir {
		t.Errorf("second file saved as %s", e.path)
	}
	if err := ca.SendFile(ctx, bytes.NewReader(nil), 0, FileOptions{TransferID: NewID(), Name: "empty"}); err != nil {
		t.Fatal(err)
	}
	checkReceived(t, k.next(t), nil)

	// The same transfer again after it completed: answered at once,
	// nothing sent, nothing new written.
	cr := &countingReader{r: bytes.NewReader(data[:1000])}
	id := NewID()
	if err := ca.SendFile(ctx, bytes.NewReader(data[:1000]), 1000, FileOptions{TransferID: id, Name: "x"}); err != nil {
		t.Fatal(err)
	}
	k.next(t)
	if err := ca.SendFile(ctx, cr, 1000, FileOptions{TransferID: id, Name: "x", SHA256: sha(data[:1000])}); err != nil {
		t.Fatal(err)
	}
	if cr.n.Load() != 0 {
		t.Errorf("a completed transfer re-offered read %d bytes", cr.n.Load())
	}
	if _, err := os.Stat(filepath.Join(k.dir, "x (1)")); err == nil {
		t.Error("a completed transfer was stored twice")
	}

	for _, o := range []FileOptions{{TransferID: ""}, {TransferID: "ok", SHA256: []byte{1}}, {TransferID: "ok", MediaType: "a\nb"}} {
		if err := ca.SendFile(ctx, bytes.NewReader(nil), 0, o); !errors.Is(err, ErrInvalid) {
			t.Errorf("SendFile(%+v) = %v, want ErrInvalid", o, err)
		}
	}
}

func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func TestFileReject(t *testing.T) {
	a, b := newSide(t), newSide(t)
	k := newSink(t, b)
	k.reject = "no thanks"
	ca, cb := connect(t, a, b, nil)
	ctx := testCtx(t)
	err := ca.SendFile(ctx, bytes.NewReader([]byte("hi")), 2, FileOptions{TransferID: "t1", Name: "hi.txt"})
	var re *RejectedError
	if !errors.As(err, &re) || re.Reason != "no thanks" {
		t.Fatalf("SendFile = %v, want a rejection with the reason", err)
	}
	// A side without OnFile rejects every file.
	err = cb.SendFile(ctx, bytes.NewReader([]byte("hi")), 2, FileOptions{TransferID: "t2", Name: "hi.txt"})
	if !errors.As(err, &re) {
		t.Fatalf("SendFile to a side without OnFile = %v", err)
	}
	if !ca.Connected() || !cb.Connected() {
		t.Fatal("a rejection must not end the channel")
	}
}

// interrupt sends data and cancels the sender once at least cut bytes
// went out; it returns when the receiver reports the interruption.
func interrupt(t *testing.T, ca *Channel, k *sink, data []byte, id string, cut int64) fileEnd {
	t.Helper()
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	err := ca.SendFile(ctx, bytes.NewReader(data), int64(len(data)), FileOptions{TransferID: id, Name: "big.bin",
		Progress: func(done, _ int64) {
			if done >= cut {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cut SendFile = %v, want context.Canceled", err)
	}
	e := k.next(t)
	if !errors.Is(e.err, ErrInterrupted) {
		t.Fatalf("receiver: %v, want ErrInterrupted", e.err)
	}
	if e.held <= 0 || e.held >= int64(len(data)) {
		t.Fatalf("the receiver kept %d bytes of %d", e.held, len(data))
	}
	return e
}

func TestFileResume(t *testing.T) {
	a, b := newSide(t), newSide(t)
	k := newSink(t, b)
	ca, _ := connect(t, a, b, nil)
	data := randomBytes(t, 8<<20)
	id := NewID()
	cut := interrupt(t, ca, k, data, id, 3<<20)

	cr := &countingReader{r: bytes.NewReader(data)}
	at := &attempts{cr: cr}
	err := ca.SendFile(testCtx(t), cr, int64(len(data)), FileOptions{TransferID: id, Name: "big.bin", SHA256: sha(data), Progress: at.progress})
	if err != nil {
		t.Fatal(err)
	}
	checkReceived(t, k.next(t), data)
	if at.count() != 1 || at.last().offset != cut.held {
		t.Fatalf("resumed at %+v, the receiver held %d", at.starts, cut.held)
	}
	if got, want := cr.n.Load(), int64(len(data))-cut.held; got != want {
		t.Fatalf("the resumed transfer read %d bytes, want %d (size %d less the %d held)", got, want, len(data), cut.held)
	}
}

func TestFileCorruptPartial(t *testing.T) {
	a, b := newSide(t), newSide(t)
	k := newSink(t, b)
	ca, _ := connect(t, a, b, nil)
	data := randomBytes(t, 4<<20)
	id := NewID()
	interrupt(t, ca, k, data, id, 1<<20)

	// The partial changes on disk meanwhile: one flipped byte.
	part := PartPath(k.dir, "big.bin", id)
	f, err := os.OpenFile(part, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{data[100] ^ 0xff}, 100)
	f.Close()

	err = ca.SendFile(testCtx(t), bytes.NewReader(data), int64(len(data)), FileOptions{TransferID: id, Name: "big.bin"})
	if !errors.Is(err, ErrFileCorrupt) {
		t.Fatalf("SendFile over a corrupted partial = %v, want ErrFileCorrupt", err)
	}
	if e := k.next(t); !errors.Is(e.err, ErrFileCorrupt) {
		t.Fatalf("receiver: %v", e.err)
	}
	for _, p := range []string{part, part + ".json", filepath.Join(k.dir, "big.bin")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s remains after a mismatch", p)
		}
	}
	// Offered again: from the start, and right this time.
	cr := &countingReader{r: bytes.NewReader(data)}
	if err := ca.SendFile(testCtx(t), cr, int64(len(data)), FileOptions{TransferID: id, Name: "big.bin", SHA256: sha(data)}); err != nil {
		t.Fatal(err)
	}
	checkReceived(t, k.next(t), data)
	if cr.n.Load() != int64(len(data)) {
		t.Errorf("the fresh attempt read %d bytes, want all %d", cr.n.Load(), len(data))
	}
}

// A re-offer with the same transfer id but another file starts afresh.
func TestFileResumeOtherContent(t *testing.T) {
	a, b := newSide(t), newSide(t)
	k := newSink(t, b)
	ca, _ := connect(t, a, b, nil)
	data := randomBytes(t, 4<<20)
	id := NewID()
	interrupt(t, ca, k, data, id, 1<<20)
	other := randomBytes(t, len(data))
	cr := &countingReader{r: bytes.NewReader(other)}
	if err := ca.SendFile(testCtx(t), cr, int64(len(other)), FileOptions{TransferID: id, Name: "big.bin", SHA256: sha(other)}); err != nil {
		t.Fatal(err)
	}
	checkReceived(t, k.next(t), other)
	if cr.n.Load() != int64(len(other)) {
		t.Errorf("read %d, want a full transfer", cr.n.Load())
	}
}
