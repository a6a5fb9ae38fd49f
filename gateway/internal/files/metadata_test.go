package files

import (
	"encoding/base64"
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestParseMetadata: Upload-Metadata as tus 1.0.0 defines it (Creation
// extension, "Upload-Metadata") and as the handler reads it
// (parseMetadata's comment).
func TestParseMetadata(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString
	for _, tc := range []struct {
		rule   string
		header string
		want   map[string]string // nil: refused (400)
	}{
		{"no header: no metadata", "", map[string]string{}},
		{"a blank header: no metadata", "  ", map[string]string{}},
		{"tus Creation's example: comma-separated pairs, the value Base64; a key alone has an empty value",
			"filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential",
			map[string]string{"filename": "world_domination_plan.pdf", "is_confidential": ""}},
		{"tus Creation: the value MAY be empty (with its space)", "filename ", map[string]string{"filename": ""}},
		{"white space after a comma is trimmed (tus-js-client sends none, others do)",
			"filename " + b64([]byte("a.txt")) + ", filetype " + b64([]byte("text/plain")),
			map[string]string{"filename": "a.txt", "filetype": "text/plain"}},
		{"extra spaces between key and value are trimmed", "to  " + b64([]byte("bob")), map[string]string{"to": "bob"}},
		{"values are bytes: a UTF-8 file name survives", "filename " + b64([]byte("报告 final.pdf")),
			map[string]string{"filename": "报告 final.pdf"}},
		{"docs/protocol.md §18.3: sha256 is its hex digits, Base64-encoded",
			"sha256 " + b64([]byte(strings.Repeat("ab", 32))), map[string]string{"sha256": strings.Repeat("ab", 32)}},
		{"tus Creation: the key MUST NOT be empty (a leading comma)", ",filename " + b64([]byte("x")), nil},
		{"tus Creation: the key MUST NOT be empty (a trailing comma)", "filename " + b64([]byte("x")) + ",", nil},
		{"tus Creation: the key MUST NOT be empty (an empty pair)", "a,,b", nil},
		{"tus Creation: the value MUST be Base64 (RFC 4648 §4, with padding)", "filename eA", nil},
		{"tus Creation: the value MUST be Base64 (not the URL alphabet)", "filename " + strings.ReplaceAll(b64([]byte{0xfb, 0xff}), "+", "-"), nil},
		{"tus Creation: the value MUST be Base64 (no characters outside it)", "filename e!==", nil},
		{"tus Creation: keys MUST be unique; not enforced: the last value wins",
			"filename " + b64([]byte("x")) + ",filename " + b64([]byte("y")), map[string]string{"filename": "y"}},
	} {
		got, err := parseMetadata(tc.header)
		switch {
		case tc.want == nil && err == nil:
			t.Errorf("%s\n  parseMetadata(%q) = %q, want an error", tc.rule, tc.header, got)
		case tc.want != nil && (err != nil || !maps.Equal(got, tc.want)):
			t.Errorf("%s\n  parseMetadata(%q) = %q, %v; want %q", tc.rule, tc.header, got, err, tc.want)
		}
	}
}

// encodeMetadata writes m as a tus client does: "key base64(value)" pairs,
// a key alone for an empty value, in key order.
func encodeMetadata(m map[string]string) string {
	var pairs []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] == "" {
			pairs = append(pairs, k)
			continue
		}
		pairs = append(pairs, k+" "+base64.StdEncoding.EncodeToString([]byte(m[k])))
	}
	return strings.Join(pairs, ",")
}

// FuzzUploadMetadata: any Upload-Metadata header is refused or read into
// keys that are not empty and hold no space or comma (tus Creation), and
// what it reads writes back to a header that reads the same. A key as the
// spec wants it (ASCII, no space or comma) with any value, written as a
// tus client writes it, reads back exactly.
func FuzzUploadMetadata(f *testing.F) {
	f.Add("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential", "filename", []byte("a.txt"))
	// tus-js-client's header for an offer to bob (docs/protocol.md §18.3).
	f.Add("filename cmVwb3J0LnBkZg==,filetype YXBwbGljYXRpb24vcGRm,to Ym9i,sha256 "+
		base64.StdEncoding.EncodeToString([]byte(strings.Repeat("0f", 32))), "to", []byte("bob"))
	f.Add("a,,b", "conversation", []byte("group.g1"))
	f.Add(" filename  eA== , x ", "k", []byte{})
	f.Fuzz(func(t *testing.T, header, key string, value []byte) {
		m, err := parseMetadata(header)
		if err == nil {
			for k := range m {
				if k == "" || strings.ContainsAny(k, " ,") {
					t.Fatalf("parseMetadata(%q): key %q", header, k)
				}
			}
			again, err := parseMetadata(encodeMetadata(m))
			if err != nil || !maps.Equal(again, m) {
				t.Fatalf("parseMetadata(%q) = %q; written back as %q it reads %q, %v", header, m, encodeMetadata(m), again, err)
			}
		}
		if key == "" || strings.ContainsFunc(key, func(r rune) bool { return r <= ' ' || r > '~' || r == ',' }) {
			return
		}
		h := encodeMetadata(map[string]string{key: string(value), key + "x": "other"})
		got, err := parseMetadata(h)
		if err != nil || got[key] != string(value) || got[key+"x"] != "other" || len(got) != 2 {
			t.Fatalf("%q = %q written as %q reads %q, %v", key, value, h, got, err)
		}
	})
}
