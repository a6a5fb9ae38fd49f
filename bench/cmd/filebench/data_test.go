package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"
)

// The generated file must read the same through ReadAt at any offset as
// through the stream minio-go gets, and its SHA-256 (sent with the offer)
// must be that of those bytes, or the file service would fail every
// upload as a checksum mismatch.
func TestSourceReadsOneFile(t *testing.T) {
	src, err := newSource(3*patternLen + 12345)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := io.ReadAll(src.stream())
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(whole)) != src.size {
		t.Fatalf("stream gave %d bytes, want %d", len(whole), src.size)
	}
	sum := sha256.Sum256(whole)
	if got := src.SHA256(); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("SHA256() = %s, want %x", got, sum)
	}
	for _, tc := range []struct {
		off int64
		n   int
	}{{0, 10}, {patternLen - 3, 7}, {patternLen, 2*patternLen + 5}, {src.size - 5, 5}, {src.size - 5, 100}} {
		buf := make([]byte, tc.n)
		n, err := src.ReadAt(buf, tc.off)
		end := min(tc.off+int64(tc.n), src.size)
		if int64(n) != end-tc.off {
			t.Errorf("ReadAt(%d bytes at %d) = %d bytes, want %d", tc.n, tc.off, n, end-tc.off)
		}
		if (end < tc.off+int64(tc.n)) != errors.Is(err, io.EOF) {
			t.Errorf("ReadAt(%d bytes at %d): err %v", tc.n, tc.off, err)
		}
		if !bytes.Equal(buf[:n], whole[tc.off:end]) {
			t.Errorf("ReadAt(%d bytes at %d) differs from the stream", tc.n, tc.off)
		}
	}
	if _, err := src.ReadAt(make([]byte, 1), src.size); !errors.Is(err, io.EOF) {
		t.Errorf("ReadAt at the end: err %v, want EOF", err)
	}
}

// A download that differs from the upload by one byte, or stops short,
// must fail the benchmark rather than be timed as a success.
func TestVerifierCatchesBadDownloads(t *testing.T) {
	src, err := newSource(2*patternLen + 100)
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := io.ReadAll(src.stream())
	flipped := bytes.Clone(whole)
	flipped[patternLen+50] ^= 1
	for _, tc := range []struct {
		name string
		data []byte
		ok   bool
	}{
		{"intact", whole, true},
		{"one bit flipped", flipped, false},
		{"short", whole[:len(whole)-1], false},
		{"empty", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Odd write sizes cross the pattern's boundary.
			err := copyChecked(io.LimitReader(bytes.NewReader(tc.data), int64(len(tc.data))), src, nil)
			if tc.ok && err != nil {
				t.Fatalf("intact download rejected: %v", err)
			}
			if !tc.ok && !errors.Is(err, errMismatch) {
				t.Fatalf("bad download accepted (err %v)", err)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"5GiB", 5 << 30, false},
		{"256MiB", 256 << 20, false},
		{"1.5 GiB", 3 << 29, false},
		{"64KiB", 64 << 10, false},
		{"1000", 1000, false},
		{"0", 0, true},
		{"GiB", 0, true},
		{"5GB", 0, true},
	} {
		got, err := parseSize(tc.in)
		if tc.bad != (err != nil) || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d (error: %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

// The disk check must refuse a run the file system cannot hold, before
// anything is started.
func TestCheckDiskRefusesTooLittleSpace(t *testing.T) {
	dir := t.TempDir()
	if _, err := checkDisk(dir, 1<<10); err != nil {
		t.Fatalf("1 KiB refused: %v", err)
	}
	if _, err := checkDisk(dir, 1<<62); err == nil {
		t.Fatal("4 EiB accepted")
	}
}
