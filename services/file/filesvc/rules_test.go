package filesvc

import (
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/protocol/parleyv1"
)

func TestPartSize(t *testing.T) {
	for _, tc := range []struct {
		size int64
		want int64
	}{
		{1, 8 << 20},
		{10 << 30, 8 << 20},       // the default limit: 1,280 parts
		{40 << 30, 9 << 20},       // 40 GiB needs 9 MiB parts to stay within 5,000
		{1 << 40, 210 << 20},      // 1 TiB
		{5000 * 8 << 20, 8 << 20}, // exactly 5,000 parts
		{5000*8<<20 + 1, 9 << 20}, // one byte more
	} {
		got := PartSize(tc.size)
		if got != tc.want {
			t.Errorf("PartSize(%d) = %d MiB, want %d MiB", tc.size, got>>20, tc.want>>20)
		}
		if parts := (tc.size + got - 1) / got; parts > objstore.MaxParts/2 || got < objstore.MinPartSize {
			t.Errorf("PartSize(%d) = %d: %d parts", tc.size, got, parts)
		}
	}
}

func TestDownloadToken(t *testing.T) {
	s := signer{key: []byte("0123456789abcdef0123456789abcdef")}
	now := time.Unix(1_800_000_000, 0)
	tok := s.issue("fabc", "u-bob", "s-1", now.Add(time.Hour))
	if uid, sid, err := s.verify(tok, "fabc", now); err != nil || uid != "u-bob" || sid != "s-1" {
		t.Fatalf("verify: %q %q %v", uid, sid, err)
	}
	// A token of the format before sessions were bound to it.
	old := b64.EncodeToString([]byte("fabc.u-bob.1800003600." + s.mac("fabc.u-bob.1800003600")))
	for name, tc := range map[string]struct {
		tok, file string
		at        time.Time
		want      error
	}{
		"expired":        {tok, "fabc", now.Add(time.Hour), errTokenExpired},
		"other file":     {tok, "fother", now, errTokenScope},
		"other key":      {signer{key: []byte("another key another key another key")}.issue("fabc", "u-bob", "s-1", now.Add(time.Hour)), "fabc", now, errTokenForged},
		"not base64":     {"!!!", "fabc", now, errTokenMalformed},
		"truncated":      {tok[:len(tok)-5], "fabc", now, errTokenForged},
		"edited user":    {editToken(tok, "u-bob", "u-eve"), "fabc", now, errTokenForged},
		"edited session": {editToken(tok, "s-1", "s-2"), "fabc", now, errTokenForged},
		"no session":     {old, "fabc", now, errTokenMalformed},
	} {
		if _, _, err := s.verify(tc.tok, tc.file, tc.at); err != tc.want {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func editToken(tok, from, to string) string {
	raw, _ := b64.DecodeString(tok)
	return b64.EncodeToString([]byte(strings.Replace(string(raw), from, to, 1)))
}

func TestCheckCommit(t *testing.T) {
	const ps = 8 << 20
	rec := func() *internalv1.FileRecord {
		return &internalv1.FileRecord{Info: &parleyv1.FileInfo{Size: 2*ps + 100}, PartSize: ps, NextPart: 33,
			Parts: []*internalv1.FilePart{{Number: 1, Etag: "a", Size: ps}}, Offset: ps}
	}
	hash := []byte{1}
	for _, tc := range []struct {
		name string
		req  *internalv1.UploadCommitRequest
		ok   bool
	}{
		{"next part", &internalv1.UploadCommitRequest{Parts: []*internalv1.FilePart{{Number: 2, Etag: "b", Size: ps}}, Offset: 2 * ps, HashState: hash}, true},
		{"tail only", &internalv1.UploadCommitRequest{TailKey: "t", TailSize: 10, Offset: ps + 10, HashState: hash}, true},
		{"last part short", &internalv1.UploadCommitRequest{Parts: []*internalv1.FilePart{{Number: 2, Etag: "b", Size: ps}, {Number: 3, Etag: "c", Size: 100}}, Offset: 2*ps + 100, HashState: hash}, true},
		{"short middle part", &internalv1.UploadCommitRequest{Parts: []*internalv1.FilePart{{Number: 2, Etag: "b", Size: 100}}, Offset: ps + 100, HashState: hash}, false},
		{"reused number", &internalv1.UploadCommitRequest{Parts: []*internalv1.FilePart{{Number: 1, Etag: "b", Size: ps}}, Offset: 2 * ps, HashState: hash}, false},
		{"number not handed out", &internalv1.UploadCommitRequest{Parts: []*internalv1.FilePart{{Number: 33, Etag: "b", Size: ps}}, Offset: 2 * ps, HashState: hash}, false},
		{"offset does not add up", &internalv1.UploadCommitRequest{Parts: []*internalv1.FilePart{{Number: 2, Etag: "b", Size: ps}}, Offset: 2*ps + 1, HashState: hash}, false},
		{"past the size", &internalv1.UploadCommitRequest{Parts: []*internalv1.FilePart{{Number: 2, Etag: "b", Size: ps}}, TailKey: "t", TailSize: 200, Offset: 2*ps + 200, HashState: hash}, false},
		{"tail at the end", &internalv1.UploadCommitRequest{Parts: []*internalv1.FilePart{{Number: 2, Etag: "b", Size: ps}}, TailKey: "t", TailSize: 100, Offset: 2*ps + 100, HashState: hash}, false},
		{"tail key without size", &internalv1.UploadCommitRequest{TailKey: "t", Offset: ps, HashState: hash}, false},
		{"no hash", &internalv1.UploadCommitRequest{Parts: []*internalv1.FilePart{{Number: 2, Etag: "b", Size: ps}}, Offset: 2 * ps}, false},
		{"no etag", &internalv1.UploadCommitRequest{Parts: []*internalv1.FilePart{{Number: 2, Size: ps}}, Offset: 2 * ps, HashState: hash}, false},
	} {
		err := checkCommit(rec(), tc.req)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestWantUsage: the sweep's repair of a user's quota usage counts the
// recorded files, keeps an offer charged but not recorded yet (the sweep
// ran between the charge and the record), and drops pending entries once
// recorded or too old (a replica that died mid-offer).
func TestWantUsage(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	at := func(ago time.Duration) int64 { return now.Add(-ago).UnixMilli() }
	was := usageRecord{Used: 999, Pending: map[string]pendingCharge{
		"fnew":      {Size: 10, At: at(time.Second)},
		"frecorded": {Size: 20, At: at(time.Second)},
		"fstale":    {Size: 40, At: at(pendingGrace + time.Second)},
	}}
	got := wantUsage(was, 100, map[string]bool{"frecorded": true}, now)
	if got.Used != 110 || len(got.Pending) != 1 || got.Pending["fnew"].Size != 10 {
		t.Fatalf("wantUsage = %+v; want 110 used (100 recorded + 10 pending), only fnew pending", got)
	}
	if got := wantUsage(usageRecord{}, 0, nil, now); got.Used != 0 || len(got.Pending) != 0 {
		t.Fatalf("empty: %+v", got)
	}
}
