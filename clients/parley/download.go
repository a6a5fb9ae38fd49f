package parley

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/parleychat/parley/protocol/filename"
)

// ErrNoFreeName: every candidate name in the download folder is taken.
var ErrNoFreeName = errors.New("parley: no free file name in the download folder")

// DownloadToDir downloads a file into the folder dir and returns the path
// it was saved at. It never touches a file already there: the bytes
// collect in PartFile(dir, name, fileID), which a later call continues, and
// only once the whole file's SHA-256 matches does the file take its name
// (sanitised again with libs/filename), or "name (1).ext", "name (2).ext",
// ... when that is taken. A live upload is followed as it arrives; a file
// still uploading otherwise is waited for (see DownloadTo).
func (c *Client) DownloadToDir(ctx context.Context, fileID, dir string, progress func(done, total uint64)) (string, *FileInfo, error) {
	if st, err := os.Stat(dir); err != nil {
		return "", nil, fmt.Errorf("download folder: %w", err)
	} else if !st.IsDir() {
		return "", nil, fmt.Errorf("download folder %s is not a folder", dir)
	}
	dl, err := c.DownloadURL(ctx, fileID)
	if err != nil {
		return "", nil, err
	}
	name := filename.Sanitize(dl.File.Name)
	part := PartFile(dir, name, fileID)
	info, err := c.DownloadTo(ctx, fileID, part, progress)
	if err != nil {
		return "", nil, err
	}
	path, err := place(part, dir, name)
	return path, info, err
}

// PartFile is where DownloadToDir collects a download's bytes: in dir,
// named after the file and its id, so calling again continues it and no
// two files share one.
func PartFile(dir, name, fileID string) string {
	return filepath.Join(dir, filename.Truncate(filename.Sanitize(name), 150)+"."+SafeID(fileID)+".part")
}

// SafeID keeps what a server calls a file id usable in a file name:
// letters, digits, _ and -, at most 64 bytes.
func SafeID(id string) string {
	id = strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf && (r == '_' || r == '-' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return r
		}
		return -1
	}, id)
	return filename.Truncate(id, 64)
}

// place moves a finished download from part to dir under name, or
// "name (1).ext", "name (2).ext", ... when taken: it never overwrites a
// file. It returns the path used.
func place(part, dir, name string) (string, error) {
	ext := filepath.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	if stem == "" {
		stem, ext = name, ""
	}
	for i := range 1000 {
		cand := name
		if i > 0 {
			cand = fmt.Sprintf("%s (%d)%s", stem, i, ext)
		}
		dst := filepath.Join(dir, cand)
		// A hard link fails when dst exists, so nothing is overwritten
		// even if another program creates the name meanwhile.
		err := os.Link(part, dst)
		if err == nil {
			_ = os.Remove(part)
			return dst, nil
		}
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		// No hard links on this file system: rename if the name is free.
		if _, statErr := os.Lstat(dst); errors.Is(statErr, fs.ErrNotExist) {
			if err := os.Rename(part, dst); err != nil {
				return "", err
			}
			return dst, nil
		}
	}
	return "", ErrNoFreeName
}
