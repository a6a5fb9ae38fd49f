package p2pchan

import (
	"bytes"
	"context"
	"os"
	"testing"
)

// BenchmarkFileThroughput sends a 16 MiB file over loopback UDP per
// iteration, the receiver writing it to disk and checking its SHA-256:
// MB/s is the channel's file throughput on this machine.
func BenchmarkFileThroughput(b *testing.B) {
	const size = 16 << 20
	sa, sb := newSide(b), newSide(b)
	dir := b.TempDir()
	done := make(chan error, 1)
	sb.cfg.OnFile = func(context.Context, FileOffer) FileDecision {
		return FileDecision{Accept: true, Dir: dir, Done: func(path string, err error) {
			if err == nil {
				err = os.Remove(path)
			}
			done <- err
		}}
	}
	ca, _ := connect(b, sa, sb, nil)
	data := randomBytes(b, size)
	sum := sha(data)
	ctx := testCtx(b)
	b.SetBytes(size)
	for b.Loop() {
		if err := ca.SendFile(ctx, bytes.NewReader(data), size, FileOptions{TransferID: NewID(), Name: "bench.bin", SHA256: sum}); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChat is the round trip of a message: sent, stored, acknowledged.
func BenchmarkChat(b *testing.B) {
	sa, sb := newSide(b), newSide(b)
	ca, _ := connect(b, sa, sb, nil)
	ctx := testCtx(b)
	for b.Loop() {
		if _, err := ca.Send(ctx, "a message of ordinary length, say forty-odd bytes"); err != nil {
			b.Fatal(err)
		}
	}
}
