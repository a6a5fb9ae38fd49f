package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/libs/objkey"
	"github.com/parleychat/parley/protocol/fileurl"
)

// transfer is one timed transfer of a whole file.
type transfer struct {
	name    string // what moved the bytes: viaGateway, directStream, ...
	bytes   int64
	elapsed time.Duration
	cpu     []cpuShare
	err     error
	// Gateway uploads only.
	mem       []memUse // the gateway's, the file service's and MinIO's memory
	commits   rpcTime  // the file service's handling of the part commits
	liveParts int64    // readable part copies in MinIO half-way (-1: not counted)
}

// mbps is the throughput in MB/s (10^6 bytes per second).
func (t transfer) mbps() float64 {
	if t.err != nil || t.elapsed <= 0 {
		return 0
	}
	return float64(t.bytes) / t.elapsed.Seconds() / 1e6
}

// gatewayFile is a file uploaded through the gateway.
type gatewayFile struct {
	id, key  string // file id, its object key in the services' bucket
	partSize int64
}

// uploadViaGateway offers src to the user named to and uploads it with
// the SDK's Upload (tus PATCH through the gateway, one request for the
// whole file, the SDK's default), returning when the upload was
// confirmed: the file service has checked the SHA-256 and completed the
// multipart upload. progress, if set, is called as bytes are sent;
// offered, if set, once the offer is made.
func uploadViaGateway(ctx context.Context, from *user, to string, src *source, progress func(sent, total uint64), offered func(*gatewayFile)) (*gatewayFile, error) {
	offer, err := from.client.OfferFile(ctx, parley.OfferRequest{
		To: to, Name: fmt.Sprintf("filebench-%d.bin", src.size), ContentType: "application/octet-stream",
		Size: uint64(src.size), SHA256: src.SHA256(),
	})
	if err != nil {
		return nil, fmt.Errorf("offer: %w", err)
	}
	f := &gatewayFile{id: offer.File.ID, partSize: int64(offer.PartSize)}
	f.key = objkey.File(f.id)
	if offered != nil {
		offered(f)
	}
	if err := from.client.Upload(ctx, offer, src, parley.UploadOptions{Progress: progress}); err != nil {
		return f, fmt.Errorf("upload %s: %w", f.id, err)
	}
	return f, nil
}

// downloadViaGateway asks for the file's download URL (DownloadURL, as the
// SDK's DownloadTo does) and GETs it, checking every byte against src and
// the X-Parley-Sha256 header. Arriving bytes are also added to *moved
// when it is not nil (for rates measured while the download runs).
func downloadViaGateway(ctx context.Context, u *user, fileID string, src *source, moved *countingWriter) error {
	dl, err := u.client.DownloadURL(ctx, fileID)
	if err != nil {
		return fmt.Errorf("download URL: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.client.HTTPBase()+dl.Path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("GET %s: %s: %s", dl.Path, resp.Status, b)
	}
	if got := resp.Header.Get("X-Parley-Sha256"); got != src.SHA256() {
		return fmt.Errorf("X-Parley-Sha256 %q, uploaded %q", got, src.SHA256())
	}
	if resp.ContentLength != src.size {
		return fmt.Errorf("Content-Length %d, uploaded %d bytes", resp.ContentLength, src.size)
	}
	return copyChecked(resp.Body, src, moved)
}

// copyChecked reads r to its end, comparing it with src.
func copyChecked(r io.Reader, src *source, moved *countingWriter) error {
	v := &verifier{src: src}
	var w io.Writer = v
	if moved != nil {
		w = io.MultiWriter(v, moved)
	}
	if _, err := io.Copy(w, r); err != nil {
		return err
	}
	return v.check()
}

// deleteViaGateway removes a file as its sender: tus termination
// (DELETE /v1/files/<id>), which deletes the stored bytes at once.
func deleteViaGateway(ctx context.Context, u *user, fileID string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u.client.HTTPBase()+fileurl.Upload(fileID), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer "+u.token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("DELETE file %s: %s: %s", fileID, resp.Status, b)
	}
	return nil
}

// putDirect writes src to MinIO with minio-go's PutObject, as a client
// that talks to MinIO itself would. parallel gives it an io.ReaderAt (a
// file on disk, say), so minio-go uploads several parts at once with its
// defaults (4 threads, 16 MiB parts); otherwise it gets a plain stream
// and uploads one partSize part after another, as the gateway does.
func putDirect(ctx context.Context, s3 *minio.Client, key string, src *source, parallel bool, partSize int64) error {
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	var r io.Reader
	if parallel {
		r = io.NewSectionReader(src, 0, src.size)
	} else {
		r = src.stream()
		opts.PartSize = uint64(partSize)
	}
	info, err := s3.PutObject(ctx, directBkt, key, r, src.size, opts)
	if err != nil {
		return fmt.Errorf("PutObject %s: %w", key, err)
	}
	if info.Size != src.size {
		return fmt.Errorf("PutObject %s: stored %d of %d bytes", key, info.Size, src.size)
	}
	return nil
}

// getDirect reads an object from MinIO with minio-go's GetObject,
// checking every byte against src. ranged asks for "Range: bytes=0-<last>",
// the request the gateway makes for a whole file (libs/objstore Get with
// a length), to tell MinIO's cost of a range from the gateway's.
func getDirect(ctx context.Context, s3 *minio.Client, bucket, key string, src *source, ranged bool) error {
	var opts minio.GetObjectOptions
	if ranged {
		if err := opts.SetRange(0, src.size-1); err != nil {
			return err
		}
	}
	obj, err := s3.GetObject(ctx, bucket, key, opts)
	if err != nil {
		return fmt.Errorf("GetObject %s: %w", key, err)
	}
	defer obj.Close()
	return copyChecked(struct{ io.Reader }{obj}, src, nil)
}

// countingWriter counts bytes written to it; Load may be called from
// another goroutine.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// humanBytes formats a size in binary units.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + " GiB"
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
}
