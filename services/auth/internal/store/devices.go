package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
)

// Device keys (docs/protocol.md §20.1) live in parley_devices, one key per
// device, "<user id>.<device id>" -> internalv1.DeviceRecord (protobuf:
// the rendezvous may read the bucket as well as ask auth). A user's
// devices are listed with the subject filter "<user id>.*", answered from
// the server's per-subject index like the session index.

// deviceIDRe is a device id: 16 lowercase hex digits (8 bytes of SHA-256).
var deviceIDRe = regexp.MustCompile(`^[0-9a-f]{16}$`)

func deviceKey(userID, deviceID string) string { return userID + "." + deviceID }

// Device returns one device record and its revision; ErrNotFound if the
// user has no such device.
func (s *Store) Device(ctx context.Context, userID, deviceID string) (*internalv1.DeviceRecord, uint64, error) {
	if !validID(userID) || !deviceIDRe.MatchString(deviceID) {
		return nil, 0, ErrNotFound
	}
	e, err := s.devices.Get(ctx, deviceKey(userID, deviceID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get device: %w", err)
	}
	rec := new(internalv1.DeviceRecord)
	if err := proto.Unmarshal(e.Value(), rec); err != nil {
		return nil, 0, fmt.Errorf("decode device %s: %w", e.Key(), err)
	}
	return rec, e.Revision(), nil
}

// PutDevice writes a device record: a new one when rev is 0 (ErrExists if
// the device is there already), else a change of the one at revision rev
// (ErrConflict if it changed since, ErrNotFound if it was deleted).
func (s *Store) PutDevice(ctx context.Context, rec *internalv1.DeviceRecord, rev uint64) error {
	uid, did := rec.GetUserId(), rec.GetKey().GetDeviceId()
	if !validID(uid) || !deviceIDRe.MatchString(did) {
		return fmt.Errorf("device %q of %q: %w", did, uid, ErrNotFound)
	}
	data, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	key := deviceKey(uid, did)
	if rev == 0 {
		_, err = s.devices.Create(ctx, key, data)
	} else {
		_, err = s.devices.Update(ctx, key, data, rev)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyExists) && rev == 0:
		return ErrExists
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		// An Update of a deleted key also fails on the revision.
		return ErrConflict
	default:
		return fmt.Errorf("put device: %w", err)
	}
}

// Devices lists a user's device records in no particular order.
func (s *Store) Devices(ctx context.Context, userID string) ([]*internalv1.DeviceRecord, error) {
	if !validID(userID) {
		return nil, nil
	}
	w, err := s.devices.WatchFiltered(ctx, []string{userID + ".*"}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	defer w.Stop()
	var recs []*internalv1.DeviceRecord
	for {
		select {
		case e := <-w.Updates():
			if e == nil { // the initial values are all delivered
				return recs, nil
			}
			rec := new(internalv1.DeviceRecord)
			if err := proto.Unmarshal(e.Value(), rec); err != nil {
				return nil, fmt.Errorf("decode device %s: %w", e.Key(), err)
			}
			recs = append(recs, rec)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// DeleteDevice deletes one device record; deleting one that does not
// exist is not an error.
func (s *Store) DeleteDevice(ctx context.Context, userID, deviceID string) error {
	if !validID(userID) || !deviceIDRe.MatchString(deviceID) {
		return nil
	}
	if err := s.devices.Delete(ctx, deviceKey(userID, deviceID)); err != nil {
		return fmt.Errorf("delete device: %w", err)
	}
	return nil
}
