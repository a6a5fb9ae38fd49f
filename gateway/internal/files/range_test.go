package files

import (
	"strconv"
	"testing"
)

// TestParseRange: which bytes a download serves for a Range header, by the
// rules of RFC 9110 §14 the handler follows (parseRange's comment).
func TestParseRange(t *testing.T) {
	const size = 1000
	type want struct {
		start, length int64
		partial, err  bool
	}
	whole := want{0, size, false, false}
	unsatisfiable := want{err: true} // 416 with Content-Range: bytes */1000 (§15.5.17)
	for _, tc := range []struct {
		rule   string
		header string
		want   want
	}{
		{"§14.2: no Range, the whole representation (200)", "", whole},
		{"§14.1.2: bytes=0-499, the first 500 bytes", "bytes=0-499", want{0, 500, true, false}},
		{"§14.1.2: bytes=500-999, the second 500 bytes", "bytes=500-999", want{500, 500, true, false}},
		{"§14.1.2: bytes=-500, the final 500 bytes (suffix-range)", "bytes=-500", want{500, 500, true, false}},
		{"§14.1.2: bytes=900-, last-pos absent: the remainder", "bytes=900-", want{900, 100, true, false}},
		{"§14.1.2: bytes=0-0, the first byte", "bytes=0-0", want{0, 1, true, false}},
		{"§14.1.2: bytes=-1, the last byte", "bytes=-1", want{999, 1, true, false}},
		{"§14.1.2: bytes=999-999, the last byte by position", "bytes=999-999", want{999, 1, true, false}},
		{"§14.1.2: last-pos at or past the length means the remainder", "bytes=10-5000", want{10, 990, true, false}},
		{"§14.1.2: a suffix longer than the representation is all of it", "bytes=-5000", want{0, size, true, false}},
		{"§14.1.2: first-pos equal to the length is unsatisfiable", "bytes=1000-", unsatisfiable},
		{"§14.1.2: first-pos past the length is unsatisfiable", "bytes=1000-2000", unsatisfiable},
		{"§14.1.2: a zero suffix-length is unsatisfiable", "bytes=-0", unsatisfiable},
		{"§14.1.1: an int-range with last-pos below first-pos is invalid; §14.2: a server MAY reject it", "bytes=500-499", unsatisfiable},
		{"§14.1.1: first-pos is digits; §14.2: MAY reject an invalid ranges-specifier", "bytes=x-5", unsatisfiable},
		{"§14.1.1: last-pos is digits", "bytes=5-x", unsatisfiable},
		{"§14.1.1: a range-spec needs a '-'", "bytes=500", unsatisfiable},
		{"§14.1.1: the range-set is not empty", "bytes=", unsatisfiable},
		{"§14.1.1: a suffix-range needs its length", "bytes=-", unsatisfiable},
		{"§14.1.1: a negative suffix-length is no suffix-length", "bytes=--5", unsatisfiable},
		{"§14.1.1: a suffix-range is one number", "bytes=-1-2", unsatisfiable},
		{"§14.1.1: a suffix-length beyond int64 is refused, not wrapped", "bytes=-9223372036854775808", unsatisfiable},
		{"§14.2: a server MAY ignore Range: several ranges are served whole", "bytes=0-1,5-6", whole},
		{"§14.2: an origin server MUST ignore a range unit it does not understand", "items=0-1", whole},
		{"§14.1: unit names are case-insensitive, but 'Bytes' is ignored as §14.2 allows", "Bytes=0-1", whole},
		{"lenient: white space around the range-spec is trimmed", "bytes= 0-1 ", want{0, 2, true, false}},
		{"lenient: strconv takes a '+' the grammar's 1*DIGIT does not", "bytes=+5-10", want{5, 6, true, false}},
	} {
		start, length, partial, err := parseRange(tc.header, size)
		got := want{start, length, partial, err != nil}
		if err != nil {
			got = want{err: true}
		}
		if got != tc.want {
			t.Errorf("%s\n  parseRange(%q, %d) = %+v (err %v), want %+v", tc.rule, tc.header, size, got, err, tc.want)
		}
	}
}

// FuzzRange: any Range header, for any file size, gives either an error
// (416) or a range inside the file, and a range it serves reads back the
// same when written as "bytes=<first>-<last>" (what Content-Range says).
func FuzzRange(f *testing.F) {
	for _, seed := range []string{
		"", "bytes=0-", "bytes=0-499", "bytes=-500", "bytes=9500-", "bytes=0-0,-1", // RFC 9110 §14.1.2's examples
		"bytes=1048576-", // a resumed download (clients/parley)
		"bytes=0-1", "Bytes=0-1", "bytes=-0", "bytes=5-4", "bytes= 1 - 2", "bytes=+1-+2", "bytes=-9223372036854775807",
	} {
		f.Add(seed, int64(10000))
	}
	f.Add("bytes=0-", int64(1))
	f.Fuzz(func(t *testing.T, header string, size int64) {
		size = 1 + int64(uint64(size)%(1<<50)) // files are never empty (range.go)
		start, length, partial, err := parseRange(header, size)
		if err != nil {
			return
		}
		if !partial {
			if start != 0 || length != size {
				t.Fatalf("parseRange(%q, %d): whole file as %d+%d", header, size, start, length)
			}
			return
		}
		if start < 0 || length < 1 || start+length > size {
			t.Fatalf("parseRange(%q, %d) = %d+%d: outside the file", header, size, start, length)
		}
		again := "bytes=" + strconv.FormatInt(start, 10) + "-" + strconv.FormatInt(start+length-1, 10)
		s2, l2, p2, err := parseRange(again, size)
		if err != nil || s2 != start || l2 != length || !p2 {
			t.Fatalf("parseRange(%q) = %d+%d; its own range %q reads %d+%d %v %v", header, start, length, again, s2, l2, p2, err)
		}
	})
}
