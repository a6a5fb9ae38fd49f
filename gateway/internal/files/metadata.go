package files

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// parseMetadata decodes Upload-Metadata (tus 1.0.0, Creation extension,
// "Upload-Metadata"): comma-separated key-value pairs, the key and the
// value separated by a space, the value Base64 encoded; a key alone (the
// space left out) has an empty value. An empty or blank header is no
// metadata.
//
// Each pair is trimmed of surrounding white space and its value too, so
// "filename  eA==" and " filename eA== " read as "filename eA==". A key
// is everything before the first space of its pair: it never holds a
// space or a comma, as the spec requires, and an empty one (",,", " x")
// is refused. Values must be standard Base64 with padding (RFC 4648 §4)
// and are taken as bytes, not checked as UTF-8. The spec's "All keys MUST
// be unique" is not enforced: a repeated key keeps its last value.
//
// The keys the handler reads are filename, filetype, sha256, to and
// conversation (docs/protocol.md §18.3); others are ignored.
func parseMetadata(s string) (map[string]string, error) {
	m := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return m, nil
	}
	for _, pair := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(pair), " ")
		if k == "" {
			return nil, errors.New("Upload-Metadata: empty key")
		}
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("Upload-Metadata: value of %q is not base64", k)
		}
		m[k] = string(b)
	}
	return m, nil
}
