// Package objstore is the object storage layer of Parley's file service.
//
// One small API, [Store], has two implementations with the same semantics:
// [MinIO] stores bytes in an S3-compatible MinIO bucket, and [Dir] stores them
// in a local directory for the one-binary embedded default. Large files are
// written as S3-style multipart uploads (NewUpload, PutPart, Complete), which
// lets an interrupted transfer resume from its last stored part; small
// objects are written with Put. Reads stream and may ask for a byte range.
//
// The S3 rules are enforced identically by both stores: every part but the
// last must be at least [MinPartSize], part numbers run from 1 to
// [MaxParts], and Complete must name each part with the ETag PutPart
// returned. Keys are validated identically too (see [ValidateKey]).
package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Size limits of multipart uploads, as in S3.
const (
	// MinPartSize is the smallest size of a part that is not the last part
	// of an upload.
	MinPartSize = 5 << 20
	// MaxPartSize is the largest size of one part.
	MaxPartSize = 5 << 30
	// MaxParts is the highest part number, and so the most parts an upload
	// can have.
	MaxParts = 10000
	// MaxKeyLen is the longest key in bytes.
	MaxKeyLen = 1024
	// MaxSegmentLen is the longest '/'-separated segment of a key in bytes
	// (a file name on the local disk of either store).
	MaxSegmentLen = 255
	// DefaultPartSize is the part size PartSize returns for files that fit
	// in MaxParts parts of this size.
	DefaultPartSize = 8 << 20
)

// Errors returned by both stores, wrapped with context; test with errors.Is.
var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("objstore: object not found")
	// ErrUploadNotFound: the multipart upload does not exist (never started,
	// completed, aborted, or started for a different key).
	ErrUploadNotFound = errors.New("objstore: upload not found")
	// ErrPartTooSmall: Complete named a part smaller than MinPartSize that
	// is not the last part.
	ErrPartTooSmall = errors.New("objstore: part too small")
	// ErrInvalidPart: a part number outside 1..MaxParts, parts not in
	// ascending order, no parts, or a part Complete names that is not stored
	// with that ETag.
	ErrInvalidPart = errors.New("objstore: invalid part")
	// ErrShortPart: the reader given to PutPart or Put ended before size
	// bytes. Nothing was stored.
	ErrShortPart = errors.New("objstore: reader ended before the declared size")
	// ErrRange: a read starting beyond the end of the object (or at a
	// negative offset).
	ErrRange = errors.New("objstore: range not satisfiable")
	// ErrInvalidKey: the key (or prefix) breaks the rules of ValidateKey.
	ErrInvalidKey = errors.New("objstore: invalid key")
	// ErrInvalidArgument: a negative size or a part larger than MaxPartSize.
	ErrInvalidArgument = errors.New("objstore: invalid argument")
)

// Part is one stored part of a multipart upload.
type Part struct {
	Number int    // 1..MaxParts
	ETag   string // what PutPart returned: the hex MD5 of the part's bytes
	Size   int64  // bytes
}

// Upload is an unfinished multipart upload.
type Upload struct {
	Key       string
	UploadID  string
	Initiated time.Time
}

// Info describes a stored object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
	// ETag changes whenever the object is replaced. It is opaque: MinIO
	// gives S3's ETag (the MD5 of a simple Put, "<md5>-<parts>" after a
	// multipart upload), Dir one derived from the file's identity. Compare
	// ETags of the same store only.
	ETag string
}

// Store is where the file service keeps bytes. It is implemented by *Dir and
// *MinIO with the same semantics; all methods are safe for concurrent use.
type Store interface {
	// NewUpload starts a multipart upload that will become the object key
	// and returns its ID.
	NewUpload(ctx context.Context, key string) (uploadID string, err error)
	// PutPart stores part number (1..MaxParts) of an upload, reading exactly
	// size bytes from r without buffering the whole part. If r ends early
	// it returns ErrShortPart and nothing is recorded. Putting a number
	// again replaces that part.
	PutPart(ctx context.Context, key, uploadID string, number int, r io.Reader, size int64) (Part, error)
	// ListParts returns the stored parts of an upload in ascending order.
	ListParts(ctx context.Context, key, uploadID string) ([]Part, error)
	// Complete turns the named parts (ascending numbers, ETags as PutPart
	// returned them) into the object key, replacing any object there, and
	// ends the upload; stored parts not named are discarded. Every part but
	// the last must be at least MinPartSize (ErrPartTooSmall); an unknown
	// part or a wrong ETag gives ErrInvalidPart.
	Complete(ctx context.Context, key, uploadID string, parts []Part) (Info, error)
	// Abort ends an upload and discards its parts; an unknown upload gives
	// ErrUploadNotFound.
	Abort(ctx context.Context, key, uploadID string) error
	// ListUploads returns the unfinished uploads whose key starts with
	// prefix, ordered by key, then Initiated, for a sweeper that aborts
	// expired ones. See (*MinIO).ListUploads for what MinIO can list.
	ListUploads(ctx context.Context, prefix string) ([]Upload, error)

	// Put stores a small object (a thumbnail, a temporary tail) of exactly
	// size bytes (at most MaxPartSize, S3's single-PUT limit) read from r,
	// streaming, replacing any object at key. If r ends early it returns
	// ErrShortPart and nothing is stored.
	Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) (Info, error)
	// Get streams length bytes of the object from offset (length < 0: to
	// the end; a length past the end is cut at the end). An offset beyond
	// the size gives ErrRange (an offset equal to it reads nothing); a
	// missing object gives ErrNotFound. The caller closes the reader.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Stat describes the object; a missing one gives ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes the object; a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// List describes the objects whose key starts with prefix, ordered by
	// key, for the retention sweeper.
	List(ctx context.Context, prefix string) ([]Info, error)
}

// PartSize returns the part size to upload a file of fileSize bytes with:
// DefaultPartSize (8 MiB), or, for a file that would need more than MaxParts
// such parts, the smallest whole number of MiB that fits it in MaxParts
// parts. Above MaxParts*MaxPartSize the result exceeds MaxPartSize and such
// a file cannot be stored.
func PartSize(fileSize int64) int64 {
	if fileSize <= DefaultPartSize*MaxParts {
		return DefaultPartSize
	}
	const mib = 1 << 20
	perPart := (fileSize + MaxParts - 1) / MaxParts
	return (perPart + mib - 1) / mib * mib
}

// ValidateKey reports (as ErrInvalidKey) whether key breaks the rules both
// stores apply to keys: valid UTF-8 of 1..MaxKeyLen bytes, '/'-separated
// segments of 1..MaxSegmentLen bytes, no leading '/', no empty segment, no
// segment starting with '.' (so no "." or ".."), no NUL or backslash. No
// valid key names a path outside a Dir's root; names starting with '.' are
// left to the stores' own files.
//
// One rule is not checked: do not store both a key and keys under it ("a"
// and "a/b"). MinIO stores both but lists only "a", hiding "a/b" even from
// List("a/"), so a sweeper would never see it. Dir handles both.
func ValidateKey(key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("%w %q: %s", ErrInvalidKey, truncate(key), err.Error())
	}
	return nil
}

type keyError string

func (e keyError) Error() string { return string(e) }

func checkKey(key string) error {
	switch {
	case key == "":
		return keyError("empty")
	case len(key) > MaxKeyLen:
		return keyError(fmt.Sprintf("longer than %d bytes", MaxKeyLen))
	case !utf8.ValidString(key):
		return keyError("not valid UTF-8")
	case strings.ContainsAny(key, "\x00\\"):
		return keyError("contains NUL or backslash")
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch {
		case seg == "":
			return keyError("empty segment (leading, trailing or double '/')")
		case seg[0] == '.':
			return keyError("segment starts with '.'")
		case len(seg) > MaxSegmentLen:
			return keyError(fmt.Sprintf("segment longer than %d bytes", MaxSegmentLen))
		}
	}
	return nil
}

// validatePrefix accepts "", and a prefix that is a valid key or becomes
// one followed by a letter (so "files/" and "files/ab" pass, "../" fails).
func validatePrefix(prefix string) error {
	if prefix == "" || checkKey(prefix) == nil || checkKey(prefix+"x") == nil {
		return nil
	}
	return fmt.Errorf("%w: prefix %q: no valid key starts with it", ErrInvalidKey, truncate(prefix))
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// checkPartNumber validates a part number given to PutPart.
func checkPartNumber(number int) error {
	if number < 1 || number > MaxParts {
		return fmt.Errorf("%w: part number %d outside 1..%d", ErrInvalidPart, number, MaxParts)
	}
	return nil
}

// checkSize validates the size given to PutPart or Put.
func checkSize(size, limit int64) error {
	if size < 0 {
		return fmt.Errorf("%w: negative size %d", ErrInvalidArgument, size)
	}
	if size > limit {
		return fmt.Errorf("%w: size %d above the limit %d", ErrInvalidArgument, size, limit)
	}
	return nil
}

// checkCompleteParts applies the rules on the list given to Complete that
// do not need the stored parts: at least one part, numbers in 1..MaxParts,
// strictly ascending.
func checkCompleteParts(parts []Part) error {
	if len(parts) == 0 {
		return fmt.Errorf("%w: no parts to complete", ErrInvalidPart)
	}
	prev := 0
	for _, p := range parts {
		if err := checkPartNumber(p.Number); err != nil {
			return err
		}
		if p.Number <= prev {
			return fmt.Errorf("%w: part %d after part %d: numbers must ascend", ErrInvalidPart, p.Number, prev)
		}
		prev = p.Number
	}
	return nil
}

// normETag strips the quotes S3 puts around ETags and lower-cases them.
func normETag(etag string) string {
	return strings.ToLower(strings.Trim(etag, `"`))
}

// exactReader reads exactly n bytes from r: it stops there and turns an
// early end of r into io.ErrUnexpectedEOF, remembering that it happened.
type exactReader struct {
	r     io.Reader
	n     int64
	short bool
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.n {
		p = p[:e.n]
	}
	n, err := e.r.Read(p)
	e.n -= int64(n)
	if err == io.EOF {
		if e.n > 0 {
			e.short = true
			return n, io.ErrUnexpectedEOF
		}
		err = nil
	}
	if e.n == 0 && err == nil {
		return n, io.EOF
	}
	return n, err
}

// Interface checks.
var (
	_ Store = (*Dir)(nil)
	_ Store = (*MinIO)(nil)
)
