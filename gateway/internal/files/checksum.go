package files

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// checksumAlgorithms are the Upload-Checksum algorithms the gateway
// supports, as announced in Tus-Checksum-Algorithm (tus 1.0.0, Checksum
// extension: sha1 is required of every server).
const checksumAlgorithms = "md5,sha1,sha256"

// newChecksum parses Upload-Checksum (tus 1.0.0, Checksum extension,
// "Upload-Checksum"): the algorithm's name and the Base64-encoded digest of
// the request's body, separated by a space. It returns a fresh hash of that
// algorithm, for the body to be written to, and the digest it must end
// with. An error is a 400 (the spec's answer to an algorithm the server
// does not support; a digest that is not Base64 or has the wrong length
// cannot match anything either); a body whose digest differs is the
// handler's 460 Checksum Mismatch.
//
// The header is trimmed of surrounding white space; the name is
// case-sensitive (the spec's algorithm names are lower-case) and the
// digest is standard Base64 with padding (RFC 4648 §4), taken from right
// after the first space.
func newChecksum(v string) (hash.Hash, []byte, error) {
	algo, enc, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok {
		return nil, nil, errors.New("Upload-Checksum must be \"<algorithm> <base64 digest>\"")
	}
	want, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, nil, errors.New("Upload-Checksum digest is not base64")
	}
	var hh hash.Hash
	switch algo {
	case "sha1":
		hh = sha1.New()
	case "sha256":
		hh = sha256.New()
	case "md5":
		hh = md5.New()
	default:
		return nil, nil, fmt.Errorf("Upload-Checksum algorithm %q is not supported (md5, sha1, sha256)", algo)
	}
	if len(want) != hh.Size() {
		return nil, nil, errors.New("Upload-Checksum digest has the wrong length")
	}
	return hh, want, nil
}
