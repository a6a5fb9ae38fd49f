package objstore

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Dir is a Store in a local directory, for the one-binary embedded default.
// Layout under its root:
//
//	objects/<key>/.data                  the bytes of object <key>
//	uploads/<id>/upload.json             an unfinished upload (its key; mtime = Initiated)
//	uploads/<id>/part-00001-<md5hex>     its parts
//	tmp/                                 files being written
//
// Every write goes to a file in tmp that is synced and then renamed into
// place, so a crash never leaves a half-written object or part visible.
// Objects live in a directory named by their key (like MinIO), so "a" and
// "a/b" can both exist.
//
// Several processes on one machine may share a root (a file service and
// gateways): the commits of an upload (a part's rename, Complete, Abort)
// hold an flock(2) on its upload.json, and a write whose directory another
// process's Delete just removed recreates it and retries. Two PutPart of
// the same part number of one upload at the same moment are not supported
// (tus never sends them); one of them wins.
type Dir struct {
	root    string
	objects string
	uploads string
	tmp     string
}

const (
	dataName   = ".data"
	uploadMeta = "upload.json"
	// staleTemp is how long a file in tmp must have gone unwritten for
	// NewDir to remove it as a leftover of a crash (a file being written
	// keeps a fresh mtime).
	staleTemp = time.Hour
	// commitAttempts bounds the retries of a rename whose directory a
	// concurrent Delete removed.
	commitAttempts = 10
)

// NewDir returns a Dir storing under root, creating root and its
// subdirectories if missing, and removing temporary files a crash left
// behind (unwritten for an hour).
func NewDir(root string) (*Dir, error) {
	if root == "" {
		return nil, fmt.Errorf("objstore: dir: %w: empty root", ErrInvalidArgument)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("objstore: dir root %q: %w", root, err)
	}
	d := &Dir{
		root:    abs,
		objects: filepath.Join(abs, "objects"),
		uploads: filepath.Join(abs, "uploads"),
		tmp:     filepath.Join(abs, "tmp"),
	}
	for _, p := range []string{d.objects, d.uploads, d.tmp} {
		if err := os.MkdirAll(p, 0o750); err != nil {
			return nil, fmt.Errorf("objstore: dir: create %s: %w", p, err)
		}
	}
	if err := d.removeStaleTemp(time.Now().Add(-staleTemp)); err != nil {
		return nil, err
	}
	return d, nil
}

// Root returns the absolute directory the store keeps its files in.
func (d *Dir) Root() string { return d.root }

func (d *Dir) removeStaleTemp(before time.Time) error {
	entries, err := os.ReadDir(d.tmp)
	if err != nil {
		return fmt.Errorf("objstore: dir: read %s: %w", d.tmp, err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || info.ModTime().After(before) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(d.tmp, e.Name())); err != nil {
			return fmt.Errorf("objstore: dir: remove stale temp file: %w", err)
		}
	}
	return nil
}

// objectPath returns the file holding key's bytes; key must be valid.
func (d *Dir) objectPath(key string) string {
	return filepath.Join(d.objects, filepath.FromSlash(key), dataName)
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validUploadID reports whether id has the form Dir's upload IDs have (32
// lower-case hex digits), so it can be used as a file name.
func validUploadID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// tempFile creates a new file in tmp.
func (d *Dir) tempFile() (*os.File, error) {
	f, err := os.CreateTemp(d.tmp, "w-")
	if err != nil {
		return nil, fmt.Errorf("objstore: dir: create temp file: %w", err)
	}
	return f, nil
}

// writeTemp streams exactly size bytes from r into a synced temp file and
// returns it (closed) with the MD5 of the bytes. On error nothing is left.
func (d *Dir) writeTemp(ctx context.Context, r io.Reader, size int64) (path string, sum []byte, info os.FileInfo, err error) {
	f, err := d.tempFile()
	if err != nil {
		return "", nil, nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := md5.New()
	er := &exactReader{r: &ctxReader{ctx: ctx, r: r}, n: size}
	if _, err = io.Copy(io.MultiWriter(f, h), er); err != nil {
		if er.short {
			return "", nil, nil, fmt.Errorf("%w: got %d of %d bytes", ErrShortPart, size-er.n, size)
		}
		return "", nil, nil, fmt.Errorf("objstore: dir: write: %w", err)
	}
	if err = f.Sync(); err != nil {
		return "", nil, nil, fmt.Errorf("objstore: dir: sync: %w", err)
	}
	if info, err = f.Stat(); err != nil {
		return "", nil, nil, fmt.Errorf("objstore: dir: stat: %w", err)
	}
	if err = f.Close(); err != nil {
		return "", nil, nil, fmt.Errorf("objstore: dir: close: %w", err)
	}
	return f.Name(), h.Sum(nil), info, nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// dirETag derives an ETag from the identity of a file: replacing an object
// renames a new file into place, which changes it.
func dirETag(info os.FileInfo) string {
	var ino uint64
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%x-%x-%x", info.Size(), info.ModTime().UnixNano(), ino)
}

func dirInfo(key string, info os.FileInfo) Info {
	return Info{Key: key, Size: info.Size(), ModTime: info.ModTime(), ETag: dirETag(info)}
}

// commitObject renames the finished temp file into place as key's object.
// A Delete of a sibling may remove the (then empty) directory between the
// MkdirAll and the Rename; then it is created again.
func (d *Dir) commitObject(tmp, key string) error {
	dst := d.objectPath(key)
	var err error
	for range commitAttempts {
		if err = os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("objstore: dir: put %q: %w", key, err)
		}
		if err = os.Rename(tmp, dst); err == nil {
			break
		}
		if _, serr := os.Stat(tmp); serr != nil || !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("objstore: dir: put %q: %w", key, err)
		}
	}
	if err != nil {
		return fmt.Errorf("objstore: dir: put %q: %w", key, err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("objstore: dir: put %q: sync: %w", key, err)
	}
	return nil
}

// Put stores an object of exactly size bytes read from r. contentType is
// not kept by Dir (Info has no content type).
func (d *Dir) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) (Info, error) {
	if err := ValidateKey(key); err != nil {
		return Info{}, err
	}
	if err := checkSize(size, MaxPartSize); err != nil {
		return Info{}, err
	}
	tmp, _, info, err := d.writeTemp(ctx, r, size)
	if err != nil {
		return Info{}, fmt.Errorf("objstore: dir: put %q: %w", key, err)
	}
	if err := d.commitObject(tmp, key); err != nil {
		os.Remove(tmp)
		return Info{}, err
	}
	return dirInfo(key, info), nil
}

// Get streams part of an object; see Store.
func (d *Dir) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("objstore: dir: get %q: %w: negative offset %d", key, ErrRange, offset)
	}
	f, err := os.Open(d.objectPath(key))
	if err != nil {
		return nil, d.notFound("get", key, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("objstore: dir: get %q: %w", key, err)
	}
	size := info.Size()
	if offset > size {
		f.Close()
		return nil, fmt.Errorf("objstore: dir: get %q: %w: offset %d beyond size %d", key, ErrRange, offset, size)
	}
	if length < 0 || length > size-offset {
		length = size - offset
	}
	return &sectionReadCloser{Reader: io.NewSectionReader(f, offset, length), f: f}, nil
}

type sectionReadCloser struct {
	io.Reader
	f *os.File
}

func (s *sectionReadCloser) Close() error { return s.f.Close() }

func (d *Dir) notFound(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("objstore: dir: %s %q: %w", op, key, ErrNotFound)
	}
	return fmt.Errorf("objstore: dir: %s %q: %w", op, key, err)
}

// Stat describes an object; see Store.
func (d *Dir) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidateKey(key); err != nil {
		return Info{}, err
	}
	info, err := os.Stat(d.objectPath(key))
	if err != nil {
		return Info{}, d.notFound("stat", key, err)
	}
	return dirInfo(key, info), nil
}

// Delete removes an object and the directories it leaves empty.
func (d *Dir) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	p := d.objectPath(key)
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return fmt.Errorf("objstore: dir: delete %q: %w", key, err)
	}
	// Remove the now empty directories up to objects/; stop at the first
	// that still holds something. (A writer that loses its directory this
	// way creates it again: see commitObject.)
	for dir := filepath.Dir(p); dir != d.objects; dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// List describes the objects whose key starts with prefix; see Store.
func (d *Dir) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	// Walk only the deepest directory every match lies under.
	start := d.objects
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = filepath.Join(d.objects, filepath.FromSlash(prefix[:i]))
	}
	var out []Info
	err := filepath.WalkDir(start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == start && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(d.objects, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if e.IsDir() {
			// Skip directories no key with the prefix can be under.
			if rel != "." && !strings.HasPrefix(rel+"/", prefix) && !strings.HasPrefix(prefix, rel+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if e.Name() != dataName {
			return nil
		}
		key := filepath.ToSlash(filepath.Dir(rel))
		if key == "." || !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted meanwhile
		}
		if err != nil {
			return err
		}
		out = append(out, dirInfo(key, info))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("objstore: dir: list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

type uploadRecord struct {
	Key string `json:"key"`
}

// NewUpload starts a multipart upload; see Store.
func (d *Dir) NewUpload(ctx context.Context, key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	meta, err := json.Marshal(uploadRecord{Key: key})
	if err != nil {
		return "", fmt.Errorf("objstore: dir: new upload %q: %w", key, err)
	}
	// Build the upload directory in tmp and rename it into place whole.
	id := newID()
	stage := filepath.Join(d.tmp, "u-"+id)
	if err := os.Mkdir(stage, 0o750); err != nil {
		return "", fmt.Errorf("objstore: dir: new upload %q: %w", key, err)
	}
	if err := writeFileSync(filepath.Join(stage, uploadMeta), meta); err != nil {
		os.RemoveAll(stage)
		return "", fmt.Errorf("objstore: dir: new upload %q: %w", key, err)
	}
	if err := os.Rename(stage, filepath.Join(d.uploads, id)); err != nil {
		os.RemoveAll(stage)
		return "", fmt.Errorf("objstore: dir: new upload %q: %w", key, err)
	}
	if err := syncDir(d.uploads); err != nil {
		return "", fmt.Errorf("objstore: dir: new upload %q: sync: %w", key, err)
	}
	return id, nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// openUpload checks that upload id exists for key and returns its directory
// and the time it was started.
func (d *Dir) openUpload(key, id string) (string, time.Time, error) {
	if err := ValidateKey(key); err != nil {
		return "", time.Time{}, err
	}
	if !validUploadID(id) {
		return "", time.Time{}, fmt.Errorf("%w: %q for key %q (malformed ID)", ErrUploadNotFound, truncate(id), key)
	}
	dir := filepath.Join(d.uploads, id)
	rec, initiated, err := readUpload(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", time.Time{}, fmt.Errorf("%w: %s for key %q", ErrUploadNotFound, id, key)
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("objstore: dir: upload %s: %w", id, err)
	}
	if rec.Key != key {
		return "", time.Time{}, fmt.Errorf("%w: %s is not an upload of key %q", ErrUploadNotFound, id, key)
	}
	return dir, initiated, nil
}

// lockUpload takes an exclusive flock on the upload's record, shared by
// every process using the root, and checks that the upload is still in
// place once it holds it. unlock releases it.
func (d *Dir) lockUpload(key, id string) (dir string, unlock func(), err error) {
	dir, _, err = d.openUpload(key, id)
	if err != nil {
		return "", nil, err
	}
	meta := filepath.Join(dir, uploadMeta)
	f, err := os.Open(meta)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, fmt.Errorf("%w: %s for key %q", ErrUploadNotFound, id, key)
	}
	if err != nil {
		return "", nil, fmt.Errorf("objstore: dir: upload %s: %w", id, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return "", nil, fmt.Errorf("objstore: dir: lock upload %s: %w", id, err)
	}
	unlock = func() { f.Close() } // closing the file releases the lock
	// Completed or aborted while we waited? Then the file we hold is no
	// longer (or no longer the one) at meta.
	held, err1 := f.Stat()
	now, err2 := os.Stat(meta)
	if err1 != nil || err2 != nil || !os.SameFile(held, now) {
		unlock()
		return "", nil, fmt.Errorf("%w: %s for key %q", ErrUploadNotFound, id, key)
	}
	return dir, unlock, nil
}

func readUpload(dir string) (uploadRecord, time.Time, error) {
	f, err := os.Open(filepath.Join(dir, uploadMeta))
	if err != nil {
		return uploadRecord{}, time.Time{}, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return uploadRecord{}, time.Time{}, err
	}
	var rec uploadRecord
	if err := json.NewDecoder(f).Decode(&rec); err != nil {
		return uploadRecord{}, time.Time{}, fmt.Errorf("read %s: %w", uploadMeta, err)
	}
	return rec, info.ModTime(), nil
}

// partFile is one part file of an upload directory.
type partFile struct {
	Part
	name    string
	modTime time.Time
}

const partPrefix = "part-"

func partName(number int, etag string) string {
	return fmt.Sprintf("%s%05d-%s", partPrefix, number, etag)
}

// parsePartName parses "part-00001-<md5hex>".
func parsePartName(name string) (int, string, bool) {
	rest, ok := strings.CutPrefix(name, partPrefix)
	if !ok {
		return 0, "", false
	}
	num, etag, ok := strings.Cut(rest, "-")
	if !ok || len(num) != 5 || len(etag) != 2*md5.Size {
		return 0, "", false
	}
	n, err := strconv.Atoi(num)
	if err != nil || checkPartNumber(n) != nil {
		return 0, "", false
	}
	if _, err := hex.DecodeString(etag); err != nil {
		return 0, "", false
	}
	return n, etag, true
}

// readParts returns the parts in an upload directory by ascending number.
// When a crash left two files for one number, the newer one counts.
func readParts(dir string) ([]partFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	byNum := map[int]partFile{}
	for _, e := range entries {
		n, etag, ok := parsePartName(e.Name())
		if !ok {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		p := partFile{Part: Part{Number: n, ETag: etag, Size: info.Size()}, name: e.Name(), modTime: info.ModTime()}
		if old, ok := byNum[n]; ok && old.modTime.After(p.modTime) {
			continue
		}
		byNum[n] = p
	}
	parts := make([]partFile, 0, len(byNum))
	for _, p := range byNum {
		parts = append(parts, p)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Number < parts[j].Number })
	return parts, nil
}

// PutPart stores one part of an upload; see Store. The bytes stream to a
// temp file; only the final rename happens under the upload's lock.
func (d *Dir) PutPart(ctx context.Context, key, uploadID string, number int, r io.Reader, size int64) (Part, error) {
	if err := checkPartNumber(number); err != nil {
		return Part{}, err
	}
	if err := checkSize(size, MaxPartSize); err != nil {
		return Part{}, err
	}
	if _, _, err := d.openUpload(key, uploadID); err != nil {
		return Part{}, err
	}
	tmp, sum, _, err := d.writeTemp(ctx, r, size)
	if err != nil {
		return Part{}, fmt.Errorf("objstore: dir: put part %d of %s: %w", number, uploadID, err)
	}
	defer os.Remove(tmp) // a no-op once renamed
	etag := hex.EncodeToString(sum)

	dir, unlock, err := d.lockUpload(key, uploadID) // aborted meanwhile?
	if err != nil {
		return Part{}, err
	}
	defer unlock()
	name := partName(number, etag)
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Part{}, fmt.Errorf("%w: %s for key %q", ErrUploadNotFound, uploadID, key)
		}
		return Part{}, fmt.Errorf("objstore: dir: put part %d of %s: %w", number, uploadID, err)
	}
	if err := syncDir(dir); err != nil {
		return Part{}, fmt.Errorf("objstore: dir: put part %d of %s: sync: %w", number, uploadID, err)
	}
	// Remove the part this one replaces.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Part{}, fmt.Errorf("objstore: dir: put part %d of %s: %w", number, uploadID, err)
	}
	for _, e := range entries {
		if n, _, ok := parsePartName(e.Name()); ok && n == number && e.Name() != name {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return Part{}, fmt.Errorf("objstore: dir: put part %d of %s: remove replaced part: %w", number, uploadID, err)
			}
		}
	}
	return Part{Number: number, ETag: etag, Size: size}, nil
}

// ListParts returns an upload's stored parts; see Store.
func (d *Dir) ListParts(ctx context.Context, key, uploadID string) ([]Part, error) {
	dir, _, err := d.openUpload(key, uploadID)
	if err != nil {
		return nil, err
	}
	files, err := readParts(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s for key %q", ErrUploadNotFound, uploadID, key)
	}
	if err != nil {
		return nil, fmt.Errorf("objstore: dir: list parts of %s: %w", uploadID, err)
	}
	parts := make([]Part, len(files))
	for i, f := range files {
		parts[i] = f.Part
	}
	return parts, nil
}

// Complete concatenates the named parts into the object, streaming, and
// removes the upload; see Store for the rules it enforces.
func (d *Dir) Complete(ctx context.Context, key, uploadID string, parts []Part) (Info, error) {
	if err := checkCompleteParts(parts); err != nil {
		return Info{}, fmt.Errorf("objstore: dir: complete %s: %w", uploadID, err)
	}
	dir, unlock, err := d.lockUpload(key, uploadID)
	if err != nil {
		return Info{}, err
	}
	defer unlock()
	files, err := readParts(dir)
	if err != nil {
		return Info{}, fmt.Errorf("objstore: dir: complete %s: %w", uploadID, err)
	}
	stored := make(map[int]partFile, len(files))
	for _, f := range files {
		stored[f.Number] = f
	}
	// The checks run in MinIO's order: all parts exist, then for each part
	// its ETag and its size.
	use := make([]partFile, len(parts))
	for i, p := range parts {
		f, ok := stored[p.Number]
		if !ok {
			return Info{}, fmt.Errorf("objstore: dir: complete %s: %w: part %d is not stored", uploadID, ErrInvalidPart, p.Number)
		}
		use[i] = f
	}
	for i, p := range parts {
		f := use[i]
		if normETag(p.ETag) != f.ETag {
			return Info{}, fmt.Errorf("objstore: dir: complete %s: %w: part %d has ETag %s, not %q", uploadID, ErrInvalidPart, p.Number, f.ETag, p.ETag)
		}
		if i < len(parts)-1 && f.Size < MinPartSize {
			return Info{}, fmt.Errorf("objstore: dir: complete %s: %w: part %d has %d bytes, less than %d", uploadID, ErrPartTooSmall, p.Number, f.Size, MinPartSize)
		}
	}

	tmp, info, err := d.concat(ctx, dir, use)
	if err != nil {
		return Info{}, fmt.Errorf("objstore: dir: complete %s: %w", uploadID, err)
	}
	if err := d.commitObject(tmp, key); err != nil {
		os.Remove(tmp)
		return Info{}, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return Info{}, fmt.Errorf("objstore: dir: complete %s: remove upload: %w", uploadID, err)
	}
	return dirInfo(key, info), nil
}

// concat streams the parts into a synced temp file.
func (d *Dir) concat(ctx context.Context, dir string, parts []partFile) (path string, info os.FileInfo, err error) {
	out, err := d.tempFile()
	if err != nil {
		return "", nil, err
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(out.Name())
		}
	}()
	for _, p := range parts {
		if err = ctx.Err(); err != nil {
			return "", nil, err
		}
		if err = appendFile(out, filepath.Join(dir, p.name)); err != nil {
			return "", nil, err
		}
	}
	if err = out.Sync(); err != nil {
		return "", nil, err
	}
	if info, err = out.Stat(); err != nil {
		return "", nil, err
	}
	if err = out.Close(); err != nil {
		return "", nil, err
	}
	return out.Name(), info, nil
}

func appendFile(dst *os.File, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(dst, f)
	return err
}

// Abort removes an upload and its parts; see Store.
func (d *Dir) Abort(ctx context.Context, key, uploadID string) error {
	dir, unlock, err := d.lockUpload(key, uploadID)
	if err != nil {
		return err
	}
	defer unlock()
	// Rename first so the upload disappears at once even if removing a
	// big directory is interrupted; tmp is cleaned at the next NewDir.
	gone := filepath.Join(d.tmp, "aborted-"+uploadID)
	if err := os.Rename(dir, gone); err != nil {
		return fmt.Errorf("objstore: dir: abort %s: %w", uploadID, err)
	}
	if err := os.RemoveAll(gone); err != nil {
		return fmt.Errorf("objstore: dir: abort %s: %w", uploadID, err)
	}
	return nil
}

// ListUploads returns the unfinished uploads whose key starts with prefix;
// see Store.
func (d *Dir) ListUploads(ctx context.Context, prefix string) ([]Upload, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(d.uploads)
	if err != nil {
		return nil, fmt.Errorf("objstore: dir: list uploads: %w", err)
	}
	var out []Upload
	for _, e := range entries {
		if !e.IsDir() || !validUploadID(e.Name()) {
			continue
		}
		rec, initiated, err := readUpload(filepath.Join(d.uploads, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // completed or aborted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("objstore: dir: list uploads: %s: %w", e.Name(), err)
		}
		if strings.HasPrefix(rec.Key, prefix) {
			out = append(out, Upload{Key: rec.Key, UploadID: e.Name(), Initiated: initiated})
		}
	}
	sortUploads(out)
	return out, nil
}

func sortUploads(u []Upload) {
	sort.Slice(u, func(i, j int) bool {
		if u[i].Key != u[j].Key {
			return u[i].Key < u[j].Key
		}
		if !u[i].Initiated.Equal(u[j].Initiated) {
			return u[i].Initiated.Before(u[j].Initiated)
		}
		return u[i].UploadID < u[j].UploadID
	})
}
