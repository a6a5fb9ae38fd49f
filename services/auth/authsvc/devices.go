package authsvc

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/auth/internal/policy"
	"github.com/parleychat/parley/services/auth/internal/store"
)

// Device keys (docs/protocol.md §20.1). Each device of a user registers
// its Ed25519 public key once (through the gateway, with the identity
// headers); anyone may list a user's keys (clients through the gateway,
// the rendezvous directly, without headers). The keys are public: the
// server only keeps and hands them out, clients pin them (trust on first
// use) and check the peer's key in the direct channel's TLS handshake, so
// a key the server made up is noticed, not trusted.
//
// Records: parley_devices "<user id>.<device id>" -> DeviceRecord
// (store/devices.go). A device's id is the lowercase hex of the first 8
// bytes of SHA-256 of its key, so anyone can recompute it. Registering a
// key again changes only its name (its registration time stays); an
// account keeps its maxDevices most recently registered keys, the oldest
// beyond them dropped after each registration. Two registrations racing
// on one account may leave it over the limit for a moment; the next one
// trims it, and lists never show more than maxDevices.

// Device key rules.
const (
	maxDevices         = 16
	maxDeviceNameChars = 64
)

// Wire errors of the device key requests.
var (
	errDeviceKey     = errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "public_key must be %d bytes (an Ed25519 public key)", ed25519.PublicKeySize)
	errDeviceName    = errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "a device name is at most %d printable characters", maxDeviceNameChars)
	errDeviceWho     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "give either username or user_id")
	errDeviceSession = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "registering a device needs a session")
	// Two keys of one account whose SHA-256 share their first 8 bytes:
	// only someone searching for it (about 2^32 tries) gets here.
	errDeviceClash = errcode.New(parleyv1.ErrorCode_ERROR_CODE_CONFLICT, "another key of yours has this device id")
)

// deviceID is a device's id for its public key: the lowercase hex of the
// first 8 bytes of SHA-256(publicKey).
func deviceID(publicKey []byte) string {
	sum := sha256.Sum256(publicKey)
	return hex.EncodeToString(sum[:8])
}

// registerDevice registers the caller's device key (subject
// AuthDeviceRegister, parleyv1.RegisterDeviceRequest with the identity
// headers) and answers DeviceKeysReply with the caller's devices, newest
// first.
func (s *Service) registerDevice(ctx context.Context, m *nats.Msg) (_ proto.Message, err error) {
	defer func() { s.metrics.devices.WithLabelValues(result(err)).Inc() }()
	who, err := identity.Read(m.Header)
	if err != nil {
		return nil, errDeviceSession
	}
	var req parleyv1.RegisterDeviceRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	if len(req.PublicKey) != ed25519.PublicKeySize {
		return nil, errDeviceKey
	}
	if !validDeviceName(req.Name) {
		return nil, errDeviceName
	}
	acct, err := s.accountOf(ctx, who)
	if err != nil {
		return nil, err
	}
	id := deviceID(req.PublicKey)
	if err := s.putDevice(ctx, acct.UserID, id, req.PublicKey, req.Name); err != nil {
		return nil, err
	}
	devices, err := s.store.Devices(ctx, acct.UserID)
	if err != nil {
		return nil, err
	}
	sortDevices(devices)
	if len(devices) > maxDevices {
		for _, old := range devices[maxDevices:] {
			if err := s.store.DeleteDevice(ctx, acct.UserID, old.GetKey().GetDeviceId()); err != nil {
				return nil, err
			}
			s.log.Info("device key dropped: the account has newer ones", "user_id", acct.UserID, "device_id", old.GetKey().GetDeviceId())
		}
		devices = devices[:maxDevices]
	}
	return devicesReply(acct, devices), nil
}

// putDevice creates the device record, or renames the device if it is
// registered already, re-reading after a concurrent write.
func (s *Service) putDevice(ctx context.Context, uid, id string, key []byte, name string) error {
	for range 3 {
		rec, rev, err := s.store.Device(ctx, uid, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			rec = &internalv1.DeviceRecord{UserId: uid, Key: &parleyv1.DeviceKey{
				DeviceId: id, PublicKey: key, Name: name, RegisteredAtUnixMs: s.now().UnixMilli()}}
		case err != nil:
			return err
		case !bytes.Equal(rec.GetKey().GetPublicKey(), key):
			return errDeviceClash
		case rec.GetKey().GetName() == name:
			return nil // registered as it is
		default:
			rec.Key.Name = name
		}
		err = s.store.PutDevice(ctx, rec, rev)
		switch {
		case err == nil:
			if rev == 0 {
				s.log.Info("device key registered", "user_id", uid, "device_id", id)
			}
			return nil
		case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrConflict):
			continue // another registration of this device wrote first
		default:
			return err
		}
	}
	return errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "this device is being registered concurrently; try again")
}

// deviceKeys lists a user's device keys, by username or user id (subject
// AuthDeviceKeys, parleyv1.DeviceKeysRequest -> DeviceKeysReply, newest
// first). It needs no identity headers: public keys are public, and it
// tells no more about an account than registration does (whether the name
// exists).
func (s *Service) deviceKeys(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req parleyv1.DeviceKeysRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	var acct store.Account
	var err error
	switch {
	case (req.Username == "") == (req.UserId == ""):
		return nil, errDeviceWho
	case req.Username != "":
		acct, _, err = s.store.Account(ctx, policy.Canonical(req.Username))
	default:
		acct, _, err = s.store.AccountByID(ctx, req.UserId)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errNoSuchUser
	case err != nil:
		return nil, err
	}
	devices, err := s.store.Devices(ctx, acct.UserID)
	if err != nil {
		return nil, err
	}
	sortDevices(devices)
	if len(devices) > maxDevices { // a registration's trim not done yet
		devices = devices[:maxDevices]
	}
	return devicesReply(acct, devices), nil
}

// accountOf returns the caller's account. It is found by id; an account
// the id index does not have yet (made by a replica that predates it) is
// found by the username the gateway sent, and indexed.
func (s *Service) accountOf(ctx context.Context, who identity.Caller) (store.Account, error) {
	acct, _, err := s.store.AccountByID(ctx, who.UserID)
	if err == nil {
		return acct, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return store.Account{}, err
	}
	if who.Username != "" {
		canonical := policy.Canonical(who.Username)
		acct, _, err = s.store.Account(ctx, canonical)
		switch {
		case err == nil && acct.UserID == who.UserID:
			if err := s.store.EnsureIDIndex(ctx, acct.UserID, canonical); err != nil {
				s.log.Warn("account id index not repaired", "user_id", acct.UserID, "err", err)
			}
			return acct, nil
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return store.Account{}, err
		}
	}
	return store.Account{}, errNoSuchUser
}

// validDeviceName: at most maxDeviceNameChars characters, each printable
// (letters, marks, numbers, punctuation, symbols and the ASCII space).
func validDeviceName(name string) bool {
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxDeviceNameChars {
		return false
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// sortDevices orders records newest first (ties by device id, so every
// replica trims the same ones).
func sortDevices(recs []*internalv1.DeviceRecord) {
	slices.SortFunc(recs, func(a, b *internalv1.DeviceRecord) int {
		if c := cmp.Compare(b.GetKey().GetRegisteredAtUnixMs(), a.GetKey().GetRegisteredAtUnixMs()); c != 0 {
			return c
		}
		return cmp.Compare(a.GetKey().GetDeviceId(), b.GetKey().GetDeviceId())
	})
}

func devicesReply(acct store.Account, recs []*internalv1.DeviceRecord) *parleyv1.DeviceKeysReply {
	r := &parleyv1.DeviceKeysReply{UserId: acct.UserID, Username: acct.Username, Devices: make([]*parleyv1.DeviceKey, 0, len(recs))}
	for _, rec := range recs {
		r.Devices = append(r.Devices, rec.GetKey())
	}
	return r
}
