package filesvc

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/services/file/internal/thumb"
)

// Pictures. When an upload is complete its first bytes say whether it is
// a picture (JPEG, PNG, GIF or WebP), whatever the sender declared: a
// picture gets its real content type and a thumbnail (at most 160×160
// JPEG, in FileInfo.thumbnail) so clients can show it inline with the
// offer; a file declared as one of those types that is not one is
// relabelled application/octet-stream, so no client renders it as a
// picture. Pictures above thumb.MaxBytes or thumb.MaxPixels, or that do
// not decode, simply get no thumbnail.

const (
	// thumbsAtOnce bounds the pictures one replica decodes at a time (each
	// may take up to ~160 MB while decoded).
	thumbsAtOnce = 2
	// thumbTimeout bounds the time finishing an upload spends on its
	// thumbnail; the upload is AVAILABLE either way.
	thumbTimeout = 10 * time.Second
)

// picture returns the content type to keep for a completed file and its
// thumbnail (nil when it is not a picture or none could be made).
func (s *Service) picture(ctx context.Context, rec *internalv1.FileRecord) (string, []byte) {
	declared := rec.Info.ContentType
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), thumbTimeout)
	defer cancel()
	head, err := s.read(ctx, rec.Key, thumb.SniffLen)
	if err != nil {
		s.log.Warn("storage: read file head", "file_id", rec.Info.FileId, "err", err)
		return declared, nil
	}
	kind := thumb.Sniff(head)
	if kind == "" {
		switch mt, _, _ := strings.Cut(declared, ";"); strings.TrimSpace(mt) {
		case "image/jpeg", "image/png", "image/gif", "image/webp":
			s.log.Info("declared picture is not one; relabelled", "file_id", rec.Info.FileId, "declared", declared)
			return "application/octet-stream", nil
		}
		return declared, nil
	}
	if rec.Info.Size > thumb.MaxBytes {
		return kind, nil
	}
	select {
	case s.thumbs <- struct{}{}:
		defer func() { <-s.thumbs }()
	case <-ctx.Done():
		return kind, nil
	}
	data, err := s.read(ctx, rec.Key, int64(rec.Info.Size))
	if err != nil {
		s.log.Warn("storage: read picture", "file_id", rec.Info.FileId, "err", err)
		return kind, nil
	}
	t, err := thumb.Make(data)
	if err != nil {
		s.log.Info("no thumbnail", "file_id", rec.Info.FileId, "err", err)
		return kind, nil
	}
	return kind, t
}

// read returns up to n bytes from the start of an object.
func (s *Service) read(ctx context.Context, key string, n int64) ([]byte, error) {
	rc, err := s.st.Get(ctx, key, 0, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, n))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}
