package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// MinIOConfig says how to reach the bucket a MinIO store keeps objects in.
type MinIOConfig struct {
	Endpoint  string // host:port, no scheme
	AccessKey string
	SecretKey string
	Bucket    string // created if missing
	Region    string // optional; "" lets the client discover it
	Secure    bool   // HTTPS
}

// Validate reports every problem with cfg at once (joined with
// errors.Join, each wrapping ErrInvalidArgument and naming its flag); it
// contacts nothing.
func (cfg MinIOConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("objstore: minio: %w: "+format, append([]any{ErrInvalidArgument}, args...)...))
	}
	switch {
	case cfg.Endpoint == "":
		bad("empty endpoint (-minio-endpoint)")
	case strings.Contains(cfg.Endpoint, "://") || strings.Contains(cfg.Endpoint, "/"):
		bad("-minio-endpoint %q must be host:port without scheme or path", cfg.Endpoint)
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		bad("-minio-access-key and -minio-secret-key are required")
	}
	if err := s3utils.CheckValidBucketNameStrict(cfg.Bucket); err != nil {
		bad("-minio-bucket %q: %v", cfg.Bucket, err)
	}
	return errors.Join(errs...)
}

// MinIO is a Store in a bucket of an S3-compatible server (MinIO). Parts
// and objects stream to the server; minio-go does not buffer them when
// given their size.
type MinIO struct {
	core   minio.Core
	bucket string
}

// NewMinIO validates cfg, connects, and creates the bucket if it does not
// exist. Creating is idempotent and safe when several processes race to do
// it.
func NewMinIO(ctx context.Context, cfg MinIOConfig) (*MinIO, error) {
	m, err := newMinIOClient(cfg)
	if err != nil {
		return nil, err
	}
	if err := m.ensureBucket(ctx, cfg.Region); err != nil {
		return nil, err
	}
	return m, nil
}

// OpenMinIO returns a store in cfg's bucket at once, without contacting
// the server: a Gate answering ErrUnavailable until the server answers
// and the bucket exists (created if missing), checked again and again
// (see Gate). Its prober runs until ctx ends or the Gate's Close.
func OpenMinIO(ctx context.Context, cfg MinIOConfig, o GateOptions) (*Gate, error) {
	m, err := newMinIOClient(cfg)
	if err != nil {
		return nil, err
	}
	return NewGate(ctx, m, func(ctx context.Context) error { return m.checkBucket(ctx, cfg.Region) }, o)
}

// newMinIOClient validates cfg and makes a client; it contacts nothing.
func newMinIOClient(cfg MinIOConfig) (*MinIO, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.Secure,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("objstore: minio: client for %s: %w", cfg.Endpoint, err)
	}
	return &MinIO{core: minio.Core{Client: client}, bucket: cfg.Bucket}, nil
}

// startupWait bounds how long NewMinIO waits for a MinIO server that is
// still starting (not listening, or answering XMinioServerNotInitialized),
// e.g. when Parley and MinIO start together on Kubernetes. After that the
// error is returned and the process exits, for its supervisor to restart.
const startupWait = 30 * time.Second

func (m *MinIO) ensureBucket(ctx context.Context, region string) error {
	err := m.checkBucket(ctx, region)
	for deadline, wait := time.Now().Add(startupWait), 50*time.Millisecond; startingUp(err) && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return fmt.Errorf("objstore: minio: bucket %q: %w", m.bucket, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
		err = m.checkBucket(ctx, region)
	}
	return err
}

// checkBucket asks the server once whether the bucket exists and creates
// it if not. An unreachable server is an error wrapping ErrUnavailable.
func (m *MinIO) checkBucket(ctx context.Context, region string) error {
	ok, err := m.core.BucketExists(ctx, m.bucket)
	if err != nil {
		if unreachable(err) {
			return fmt.Errorf("objstore: minio: bucket %q: %w: %w", m.bucket, ErrUnavailable, err)
		}
		return fmt.Errorf("objstore: minio: bucket %q: %w", m.bucket, err)
	}
	if ok {
		return nil
	}
	err = m.core.MakeBucket(ctx, m.bucket, minio.MakeBucketOptions{Region: region})
	if err == nil {
		return nil
	}
	// Another process may have created it between the two calls.
	switch minio.ToErrorResponse(err).Code {
	case minio.BucketAlreadyOwnedByYou, minio.BucketAlreadyExists:
		if ok, err2 := m.core.BucketExists(ctx, m.bucket); err2 == nil && ok {
			return nil
		}
	}
	return fmt.Errorf("objstore: minio: create bucket %q: %w", m.bucket, err)
}

// startingUp reports whether err is what a MinIO server answers in its
// first seconds: nothing listening yet, or not initialized.
func startingUp(err error) bool {
	return err != nil && (errors.Is(err, syscall.ECONNREFUSED) ||
		errorResponse(err).Code == "XMinioServerNotInitialized")
}

// errorResponse is the S3 error response err wraps, if any.
func errorResponse(err error) minio.ErrorResponse {
	var r minio.ErrorResponse
	if errors.As(err, &r) {
		return r
	}
	return minio.ToErrorResponse(err)
}

// Bucket returns the name of the bucket the store uses.
func (m *MinIO) Bucket() string { return m.bucket }

// mapErr turns MinIO's error responses into the package's sentinels.
func (m *MinIO) mapErr(op, key string, err error) error {
	var sentinel error
	switch minio.ToErrorResponse(err).Code {
	case minio.NoSuchKey:
		sentinel = ErrNotFound
	case minio.NoSuchUpload:
		sentinel = ErrUploadNotFound
	case minio.EntityTooSmall:
		sentinel = ErrPartTooSmall
	case minio.InvalidPart, minio.InvalidPartOrder:
		sentinel = ErrInvalidPart
	case minio.InvalidRange:
		sentinel = ErrRange
	case minio.XMinioInvalidObjectName:
		sentinel = ErrInvalidKey
	default:
		if unreachable(err) {
			sentinel = ErrUnavailable
		}
	}
	if sentinel != nil {
		return fmt.Errorf("objstore: minio: %s %q: %w: %v", op, key, sentinel, err)
	}
	return fmt.Errorf("objstore: minio: %s %q: %w", op, key, err)
}

// NewUpload starts a multipart upload; see Store.
func (m *MinIO) NewUpload(ctx context.Context, key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	id, err := m.core.NewMultipartUpload(ctx, m.bucket, key, minio.PutObjectOptions{})
	if err != nil {
		return "", m.mapErr("new upload", key, err)
	}
	return id, nil
}

func checkUploadID(key, uploadID string) error {
	if uploadID == "" {
		return fmt.Errorf("%w: empty upload ID for key %q", ErrUploadNotFound, key)
	}
	return nil
}

// PutPart streams one part to the server; see Store.
func (m *MinIO) PutPart(ctx context.Context, key, uploadID string, number int, r io.Reader, size int64) (Part, error) {
	if err := ValidateKey(key); err != nil {
		return Part{}, err
	}
	if err := checkUploadID(key, uploadID); err != nil {
		return Part{}, err
	}
	if err := checkPartNumber(number); err != nil {
		return Part{}, err
	}
	if err := checkSize(size, MaxPartSize); err != nil {
		return Part{}, err
	}
	// exactReader is not an io.Seeker, so minio-go streams it once (no
	// retries, which would need the bytes again). The payload is not
	// signed chunk by chunk (DisableContentSha256: that SHA-256 was 38% of
	// a gateway's CPU while uploading): the request itself is signed, and
	// the file's bytes are checked end to end by the whole-file SHA-256
	// (uploaders declare it, downloaders verify it); -minio-tls protects
	// the hop to MinIO. A short reader makes the
	// request body shorter than its Content-Length: the request fails and
	// the server records nothing.
	er := &exactReader{r: r, n: size}
	p, err := m.core.PutObjectPart(ctx, m.bucket, key, uploadID, number, er, size, minio.PutObjectPartOptions{DisableContentSha256: true})
	if er.short {
		return Part{}, fmt.Errorf("objstore: minio: put part %d of %q: %w: got %d of %d bytes", number, key, ErrShortPart, size-er.n, size)
	}
	if err != nil {
		return Part{}, m.mapErr(fmt.Sprintf("put part %d of", number), key, err)
	}
	return Part{Number: number, ETag: normETag(p.ETag), Size: size}, nil
}

// ListParts lists an upload's parts, following the server's pages.
func (m *MinIO) ListParts(ctx context.Context, key, uploadID string) ([]Part, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if err := checkUploadID(key, uploadID); err != nil {
		return nil, err
	}
	var parts []Part
	marker := 0
	for {
		res, err := m.core.ListObjectParts(ctx, m.bucket, key, uploadID, marker, 1000)
		if err != nil {
			return nil, m.mapErr("list parts of", key, err)
		}
		for _, p := range res.ObjectParts {
			parts = append(parts, Part{Number: p.PartNumber, ETag: normETag(p.ETag), Size: p.Size})
		}
		if !res.IsTruncated || res.NextPartNumberMarker <= marker {
			return parts, nil
		}
		marker = res.NextPartNumberMarker
	}
}

// Complete asks the server to assemble the object; see Store.
func (m *MinIO) Complete(ctx context.Context, key, uploadID string, parts []Part) (Info, error) {
	if err := ValidateKey(key); err != nil {
		return Info{}, err
	}
	if err := checkUploadID(key, uploadID); err != nil {
		return Info{}, err
	}
	if err := checkCompleteParts(parts); err != nil {
		return Info{}, fmt.Errorf("objstore: minio: complete %q: %w", key, err)
	}
	cp := make([]minio.CompletePart, len(parts))
	for i, p := range parts {
		cp[i] = minio.CompletePart{PartNumber: p.Number, ETag: normETag(p.ETag)}
	}
	if _, err := m.core.CompleteMultipartUpload(ctx, m.bucket, key, uploadID, cp, minio.PutObjectOptions{}); err != nil {
		return Info{}, m.mapErr("complete", key, err)
	}
	// The response carries no size or time; ask for them.
	return m.Stat(ctx, key)
}

// Abort ends an upload and discards its parts; see Store. MinIO answers
// success when aborting an unknown upload, so Abort first checks that the
// upload exists (two requests; of two racing Aborts both may succeed).
func (m *MinIO) Abort(ctx context.Context, key, uploadID string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if err := checkUploadID(key, uploadID); err != nil {
		return err
	}
	if _, err := m.core.ListObjectParts(ctx, m.bucket, key, uploadID, 0, 1); err != nil {
		return m.mapErr("abort", key, err)
	}
	if err := m.core.AbortMultipartUpload(ctx, m.bucket, key, uploadID); err != nil {
		return m.mapErr("abort", key, err)
	}
	return nil
}

// ListUploads returns the unfinished uploads whose key starts with prefix.
//
// MinIO answers a listing of multipart uploads in one of two ways: with a
// prefix it lists only uploads of the object named exactly that, and
// without one it lists uploads from the memory of the server that answers,
// which only holds uploads started since that server process started.
// ListUploads therefore asks without a prefix and filters here, so a prefix
// works as on S3; but on MinIO an upload started before the server last
// restarted is not listed. MinIO removes such uploads itself once they are
// older than its stale_uploads_expiry setting (MINIO_API_STALE_UPLOADS_EXPIRY,
// default 24h; checked every stale_uploads_cleanup_interval, default 6h).
func (m *MinIO) ListUploads(ctx context.Context, prefix string) ([]Upload, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	var out []Upload
	keyMarker, idMarker := "", ""
	for {
		res, err := m.core.ListMultipartUploads(ctx, m.bucket, "", keyMarker, idMarker, "", 1000)
		if err != nil {
			return nil, m.mapErr("list uploads", prefix, err)
		}
		for _, u := range res.Uploads {
			if strings.HasPrefix(u.Key, prefix) {
				out = append(out, Upload{Key: u.Key, UploadID: u.UploadID, Initiated: u.Initiated})
			}
		}
		if !res.IsTruncated || (res.NextKeyMarker == keyMarker && res.NextUploadIDMarker == idMarker) {
			break
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
	sortUploads(out)
	return out, nil
}

// Put stores a small object with one streaming PUT; see Store. Like S3's
// single PUT, it takes at most MaxPartSize (5 GiB).
func (m *MinIO) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) (Info, error) {
	if err := ValidateKey(key); err != nil {
		return Info{}, err
	}
	if err := checkSize(size, MaxPartSize); err != nil {
		return Info{}, err
	}
	er := &exactReader{r: r, n: size}
	up, err := m.core.PutObject(ctx, m.bucket, key, er, size, "", "", minio.PutObjectOptions{ContentType: contentType, DisableContentSha256: true})
	if er.short {
		return Info{}, fmt.Errorf("objstore: minio: put %q: %w: got %d of %d bytes", key, ErrShortPart, size-er.n, size)
	}
	if err != nil {
		return Info{}, m.mapErr("put", key, err)
	}
	info := Info{Key: key, Size: size, ETag: normETag(up.ETag), ModTime: up.LastModified}
	if info.ModTime.IsZero() {
		// A PUT response has no Last-Modified; take it from the object
		// unless another writer replaced it meanwhile.
		if st, err := m.Stat(ctx, key); err == nil && st.ETag == info.ETag {
			info.ModTime = st.ModTime
		} else {
			info.ModTime = time.Now()
		}
	}
	return info, nil
}

// Get streams part of an object; see Store. Errors come back from Get, not
// from the first Read.
func (m *MinIO) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("objstore: minio: get %q: %w: negative offset %d", key, ErrRange, offset)
	}
	if length == 0 {
		return m.emptyAt(ctx, key, offset)
	}
	var opts minio.GetObjectOptions
	switch {
	case offset == 0 && length < 0:
		// Whole object: no Range header, which also works for empty objects.
	case length < 0:
		if err := opts.SetRange(offset, 0); err != nil {
			return nil, fmt.Errorf("objstore: minio: get %q: %w", key, err)
		}
	default:
		if err := opts.SetRange(offset, offset+length-1); err != nil {
			return nil, fmt.Errorf("objstore: minio: get %q: %w", key, err)
		}
	}
	body, _, _, err := m.core.GetObject(ctx, m.bucket, key, opts)
	if err != nil {
		if minio.ToErrorResponse(err).Code == minio.InvalidRange {
			// S3 refuses a range starting at the size; an offset equal to
			// the size reads nothing here.
			return m.emptyAt(ctx, key, offset)
		}
		return nil, m.mapErr("get", key, err)
	}
	return body, nil
}

// emptyAt returns an empty reader if offset is within the object (0..size).
func (m *MinIO) emptyAt(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	st, err := m.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	if offset > st.Size {
		return nil, fmt.Errorf("objstore: minio: get %q: %w: offset %d beyond size %d", key, ErrRange, offset, st.Size)
	}
	return io.NopCloser(strings.NewReader("")), nil
}

// Stat describes an object; see Store.
func (m *MinIO) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidateKey(key); err != nil {
		return Info{}, err
	}
	oi, err := m.core.StatObject(ctx, m.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		if r := minio.ToErrorResponse(err); r.StatusCode == http.StatusNotFound && r.Code == "" {
			return Info{}, fmt.Errorf("objstore: minio: stat %q: %w", key, ErrNotFound)
		}
		return Info{}, m.mapErr("stat", key, err)
	}
	return Info{Key: key, Size: oi.Size, ModTime: oi.LastModified, ETag: normETag(oi.ETag)}, nil
}

// Delete removes an object; a missing one is not an error.
func (m *MinIO) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if err := m.core.RemoveObject(ctx, m.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		if errors.Is(m.mapErr("delete", key, err), ErrNotFound) {
			return nil
		}
		return m.mapErr("delete", key, err)
	}
	return nil
}

// List describes the objects whose key starts with prefix; see Store.
func (m *MinIO) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops minio-go's listing goroutine if we return early
	var out []Info
	for oi := range m.core.Client.ListObjects(ctx, m.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return nil, m.mapErr("list", prefix, oi.Err)
		}
		out = append(out, Info{Key: oi.Key, Size: oi.Size, ModTime: oi.LastModified, ETag: normETag(oi.ETag)})
	}
	return out, nil
}
