// Package objkey is the layout of Parley's object store (MinIO, or the
// directory of the embedded default): which key each stored thing has.
// The file service creates uploads and removes objects, the gateways write
// parts, tails and live copies and read them back; both name them here.
//
//	files/<file id>              a file: the multipart upload while it is
//	                             written, then the finished object
//	tails/<file id>/<offset>     bytes after the last whole part when an
//	                             upload request ended (offset: where they end)
//	live/<file id>/<part number> a part stored again as a plain object, so a
//	                             download can read it before the upload ends
//
// Thumbnails are not objects: they live in the file's record.
package objkey

import (
	"strconv"
	"strings"
)

// Prefixes of the three kinds of object; the file service's sweep lists
// each (Prefixes) for objects no record owns.
const (
	FilesPrefix = "files/"
	TailsPrefix = "tails/"
	LiveRoot    = "live/"
)

// Prefixes are every prefix Parley stores objects under.
func Prefixes() []string { return []string{FilesPrefix, TailsPrefix, LiveRoot} }

// File is the key of file id's object (and of its multipart upload).
func File(fileID string) string { return FilesPrefix + fileID }

// Tail is the key of the tail of file id's upload that ends at offset.
func Tail(fileID string, offset uint64) string {
	return TailsPrefix + fileID + "/" + strconv.FormatUint(offset, 10)
}

// LivePrefix is the prefix of file id's live copies, kept in its record
// (FileRecord.live_prefix) while live copies are written.
func LivePrefix(fileID string) string { return LiveRoot + fileID + "/" }

// LivePart is the key of part number n's live copy under prefix (a
// record's LivePrefix).
func LivePart(prefix string, n uint32) string { return prefix + strconv.FormatUint(uint64(n), 10) }

// Owner is what a record keeps of key while it owns the object: the key
// itself for files and tails, the live prefix for live copies (a record
// names their prefix, not each part).
func Owner(key string) string {
	if rest, ok := strings.CutPrefix(key, LiveRoot); ok {
		if i := strings.LastIndexByte(rest, '/'); i >= 0 {
			return LiveRoot + rest[:i+1]
		}
	}
	return key
}
