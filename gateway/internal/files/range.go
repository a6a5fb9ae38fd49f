package files

import (
	"errors"
	"strconv"
	"strings"
)

// parseRange reads the Range header of a download (RFC 9110 §14.2) for a
// file of size bytes and returns the bytes to serve: start and length, and
// partial when they are one byte range (206, with Content-Range, §14.4)
// rather than the whole file (200). An error means the range is not
// satisfiable or not well formed: the handler answers 416 with
// "Content-Range: bytes */<size>" (§15.5.17).
//
// What it accepts, of the byte-range grammar (§14.1.1, §14.1.2):
//   - no header: the whole file;
//   - "bytes=<first>-<last>" (int-range): first to last inclusive, last
//     past the end meaning the end (§14.1.2); last below first is invalid
//     (§14.1.1) and refused;
//   - "bytes=<first>-": first to the end;
//   - "bytes=-<n>" (suffix-range): the last n bytes, the whole file when it
//     is shorter (§14.1.2); n = 0 is unsatisfiable (§14.1.2);
//   - a first-pos at or past the end is unsatisfiable (§14.1.2): 416.
//
// What it ignores (the whole file, 200), as §14.2 lets a server ignore
// Range: a ranges-specifier naming several ranges, and a range unit other
// than "bytes" as written (an origin server MUST ignore a unit it does not
// understand; "Bytes" is the same unit, §14.1, and is ignored too). The
// numbers are read with strconv.ParseInt, which also takes a leading '+'
// that the grammar's 1*DIGIT does not: harmless, kept as it is.
//
// If-Range (§13.1.5) is not looked at: a file's bytes never change once
// written (its ETag is their SHA-256), so a range of them is always of the
// representation the client holds. A size of 0 never comes here: files
// are never empty.
func parseRange(v string, size int64) (start, length int64, partial bool, err error) {
	if v == "" {
		return 0, size, false, nil
	}
	spec, ok := strings.CutPrefix(v, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, size, false, nil
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, false, errors.New("malformed Range")
	}
	switch {
	case a == "":
		n, perr := strconv.ParseInt(b, 10, 64)
		if perr != nil || n <= 0 {
			return 0, 0, false, errors.New("malformed Range")
		}
		n = min(n, size)
		return size - n, n, true, nil
	default:
		s, perr := strconv.ParseInt(a, 10, 64)
		if perr != nil || s < 0 {
			return 0, 0, false, errors.New("malformed Range")
		}
		if s >= size {
			return 0, 0, false, errors.New("Range starts past the end of the file")
		}
		e := size - 1
		if b != "" {
			if e, perr = strconv.ParseInt(b, 10, 64); perr != nil || e < s {
				return 0, 0, false, errors.New("malformed Range")
			}
			e = min(e, size-1)
		}
		return s, e - s + 1, true, nil
	}
}
