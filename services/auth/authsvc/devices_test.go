package authsvc_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// newDeviceKey makes an Ed25519 public key, as a client does once per
// device.
func newDeviceKey(t testing.TB) []byte {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// wantDeviceID is docs/protocol.md §20.1's device id, computed here
// independently of the service.
func wantDeviceID(pub []byte) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// sessionHeader is what the gateway sends with a request of a session's
// connection: the caller and the origin.
func sessionHeader(s *parleyv1.Session) nats.Header {
	h := gatewayHeader(clientAddr)
	h.Set(subject.HeaderUserID, s.UserId)
	h.Set(subject.HeaderSessionID, s.SessionId)
	h.Set(subject.HeaderUsername, s.Username)
	return h
}

func registerDevice(nc *nats.Conn, h nats.Header, pub []byte, name string) (*parleyv1.DeviceKeysReply, error) {
	var reply parleyv1.DeviceKeysReply
	err := rpc.Request(context.Background(), nc, subject.AuthDeviceRegister, h,
		&parleyv1.RegisterDeviceRequest{PublicKey: pub, Name: name}, &reply)
	return &reply, err
}

// deviceKeys asks as another service does: no identity headers.
func deviceKeys(nc *nats.Conn, req *parleyv1.DeviceKeysRequest) (*parleyv1.DeviceKeysReply, error) {
	var reply parleyv1.DeviceKeysReply
	err := rpc.Request(context.Background(), nc, subject.AuthDeviceKeys, nil, req, &reply)
	return &reply, err
}

// deviceList renders a reply's devices as "name:id" in order.
func deviceList(r *parleyv1.DeviceKeysReply) string {
	var out []string
	for _, d := range r.Devices {
		out = append(out, d.Name+":"+d.DeviceId)
	}
	return strings.Join(out, " ")
}

func TestRegisterDevice(t *testing.T) {
	ns := testenv.NATS(t)
	startAuth(t, ns.ClientURL(), fastConfig())
	nc := testenv.Connect(t, ns)
	alice := mustRegister(t, nc, "Alice", "alice's password")
	h := sessionHeader(alice)

	laptop, phone := newDeviceKey(t), newDeviceKey(t)
	before := time.Now().UnixMilli()
	r, err := registerDevice(nc, h, laptop, "laptop")
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	if r.UserId != alice.UserId || r.Username != "Alice" || len(r.Devices) != 1 {
		t.Fatalf("reply %v", r)
	}
	d := r.Devices[0]
	if d.DeviceId != wantDeviceID(laptop) || !bytes.Equal(d.PublicKey, laptop) || d.Name != "laptop" ||
		d.RegisteredAtUnixMs < before || d.RegisteredAtUnixMs > time.Now().UnixMilli() {
		t.Fatalf("device %v, want id %s", d, wantDeviceID(laptop))
	}
	registered := d.RegisteredAtUnixMs

	// Again with another name: renamed, still one device, its time kept.
	if r, err = registerDevice(nc, h, laptop, "work laptop ✓"); err != nil {
		t.Fatalf("register again: %v", err)
	}
	if len(r.Devices) != 1 || r.Devices[0].Name != "work laptop ✓" || r.Devices[0].RegisteredAtUnixMs != registered {
		t.Fatalf("after renaming: %v", r)
	}
	time.Sleep(2 * time.Millisecond) // a later registration time
	if r, err = registerDevice(nc, h, phone, ""); err != nil {
		t.Fatalf("register a second device: %v", err)
	}
	if got, want := deviceList(r), ":"+wantDeviceID(phone)+" work laptop ✓:"+wantDeviceID(laptop); got != want {
		t.Fatalf("devices %q, want %q (newest first)", got, want)
	}

	// The bucket holds DeviceRecords under "<user id>.<device id>", where
	// the rendezvous may read them.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), subject.BucketDevices)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), alice.UserId+"."+wantDeviceID(phone))
	if err != nil {
		t.Fatal(err)
	}
	var rec internalv1.DeviceRecord
	if err := proto.Unmarshal(e.Value(), &rec); err != nil || rec.UserId != alice.UserId || !bytes.Equal(rec.Key.GetPublicKey(), phone) {
		t.Fatalf("stored record %v, %v", &rec, err)
	}

	// Another account may register the same key: it is theirs too.
	bob := mustRegister(t, nc, "bob", "bob's password")
	if r, err = registerDevice(nc, sessionHeader(bob), phone, "shared"); err != nil || deviceList(r) != "shared:"+wantDeviceID(phone) {
		t.Fatalf("bob registers the key: %v, %v", r, err)
	}

	for _, tc := range []struct {
		name string
		h    nats.Header
		key  []byte
		dev  string
		code parleyv1.ErrorCode
	}{
		{"key of 31 bytes", h, laptop[:31], "x", parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"key of 33 bytes", h, append(slices.Clone(laptop), 0), "x", parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"no key", h, nil, "x", parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"name of 65 characters", h, laptop, strings.Repeat("é", 65), parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"control character", h, laptop, "lap\ntop", parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"no identity", gatewayHeader(clientAddr), laptop, "x", parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := registerDevice(nc, tc.h, tc.key, tc.dev)
			wantCode(t, err, tc.code)
		})
	}
	if r, err = registerDevice(nc, h, laptop, strings.Repeat("é", 64)); err != nil || r.Devices[1].Name != strings.Repeat("é", 64) {
		t.Fatalf("a name of 64 characters: %v, %v", r, err)
	}
}

// An account keeps its 16 most recently registered keys: each
// registration beyond them drops the oldest, in every list.
func TestDeviceLimit(t *testing.T) {
	ns := testenv.NATS(t)
	clk := newClock()
	startAuthClock(t, ns.ClientURL(), fastConfig(), clk.Now)
	nc := testenv.Connect(t, ns)
	carol := mustRegister(t, nc, "carol", "carol's password")
	var ids []string // oldest first
	for i := range 18 {
		clk.Advance(time.Second)
		key := newDeviceKey(t)
		ids = append(ids, wantDeviceID(key))
		r, err := registerDevice(nc, sessionHeader(carol), key, fmt.Sprint("d", i))
		if err != nil {
			t.Fatalf("device %d: %v", i, err)
		}
		if want := min(i+1, 16); len(r.Devices) != want || r.Devices[0].DeviceId != ids[i] {
			t.Fatalf("device %d: %d devices, newest %s; want %d, newest %s", i, len(r.Devices), r.Devices[0].GetDeviceId(), want, ids[i])
		}
	}
	r, err := deviceKeys(nc, &parleyv1.DeviceKeysRequest{UserId: carol.UserId})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range r.Devices {
		got = append(got, d.DeviceId)
	}
	want := slices.Clone(ids[2:])
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Fatalf("devices %v, want the 16 newest, newest first: %v", got, want)
	}
	// Re-registering a kept key renames it; it does not make it newer.
	first := r.Devices[len(r.Devices)-1]
	clk.Advance(time.Second)
	r, err = registerDevice(nc, sessionHeader(carol), first.PublicKey, "renamed")
	if err != nil || len(r.Devices) != 16 || r.Devices[15].DeviceId != first.DeviceId || r.Devices[15].Name != "renamed" {
		t.Fatalf("rename the oldest: %v, %v", r, err)
	}
}

func TestDeviceKeys(t *testing.T) {
	ns := testenv.NATS(t)
	startAuth(t, ns.ClientURL(), fastConfig())
	nc := testenv.Connect(t, ns)
	dave := mustRegister(t, nc, "Dave.K", "dave's password")
	erin := mustRegister(t, nc, "erin", "erin's password")
	key := newDeviceKey(t)
	if _, err := registerDevice(nc, sessionHeader(dave), key, "desk"); err != nil {
		t.Fatal(err)
	}
	for _, req := range []*parleyv1.DeviceKeysRequest{{Username: "Dave.K"}, {Username: "dave.k"}, {UserId: dave.UserId}} {
		r, err := deviceKeys(nc, req)
		if err != nil {
			t.Fatalf("%v: %v", req, err)
		}
		if r.UserId != dave.UserId || r.Username != "Dave.K" || deviceList(r) != "desk:"+wantDeviceID(key) || !bytes.Equal(r.Devices[0].PublicKey, key) {
			t.Fatalf("%v: %v", req, r)
		}
	}
	// A user without devices exists, with none.
	r, err := deviceKeys(nc, &parleyv1.DeviceKeysRequest{UserId: erin.UserId})
	if err != nil || r.UserId != erin.UserId || r.Username != "erin" || len(r.Devices) != 0 {
		t.Fatalf("erin: %v, %v", r, err)
	}
	for _, tc := range []struct {
		name string
		req  *parleyv1.DeviceKeysRequest
		code parleyv1.ErrorCode
	}{
		{"unknown name", &parleyv1.DeviceKeysRequest{Username: "frank"}, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"unknown id", &parleyv1.DeviceKeysRequest{UserId: "uaaaaaaaaaaaaaaaaaaaa"}, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"not an id", &parleyv1.DeviceKeysRequest{UserId: "u.*"}, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"neither", &parleyv1.DeviceKeysRequest{}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"both", &parleyv1.DeviceKeysRequest{Username: "erin", UserId: erin.UserId}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := deviceKeys(nc, tc.req)
			wantCode(t, err, tc.code)
		})
	}
}

// Accounts made before the user id index existed are indexed when a
// replica starts, and one the index misses is repaired when its user
// registers a device.
func TestDeviceKeysByIDOfOlderAccounts(t *testing.T) {
	ns := testenv.NATS(t)
	in := startAuth(t, ns.ClientURL(), fastConfig())
	nc := testenv.Connect(t, ns)
	gina := mustRegister(t, nc, "gina", "gina's password")
	hal := mustRegister(t, nc, "hal", "hal's password")
	in.stop()

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, subject.BucketAccounts)
	if err != nil {
		t.Fatal(err)
	}
	// As before the index: no entries, no marker.
	for _, key := range []string{"id." + gina.UserId, "id." + hal.UserId, "meta.id-index-v1"} {
		if err := kv.Purge(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	in = startAuth(t, ns.ClientURL(), fastConfig())
	testenv.Eventually(t, 10*time.Second, "gina found by id after the start", func() bool {
		r, err := deviceKeys(nc, &parleyv1.DeviceKeysRequest{UserId: gina.UserId})
		return err == nil && r.Username == "gina"
	})
	testenv.Eventually(t, 10*time.Second, "the index's marker", func() bool {
		_, err := kv.Get(ctx, "meta.id-index-v1")
		return err == nil
	})
	in.stop()

	// The index has run (the marker is there); hal's entry goes missing
	// afterwards (an account made by an older replica).
	if err := kv.Purge(ctx, "id."+hal.UserId); err != nil {
		t.Fatal(err)
	}
	startAuth(t, ns.ClientURL(), fastConfig())
	_, err = deviceKeys(nc, &parleyv1.DeviceKeysRequest{UserId: hal.UserId})
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND)
	key := newDeviceKey(t)
	if _, err := registerDevice(nc, sessionHeader(hal), key, "hal's"); err != nil {
		t.Fatalf("hal registers: %v", err)
	}
	r, err := deviceKeys(nc, &parleyv1.DeviceKeysRequest{UserId: hal.UserId})
	if err != nil || r.Username != "hal" || deviceList(r) != "hal's:"+wantDeviceID(key) {
		t.Fatalf("hal by id after registering a device: %v, %v", r, err)
	}
}
