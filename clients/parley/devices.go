package parley

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// Device keys (docs/protocol.md §20.1). Every device that goes direct holds
// an Ed25519 key pair; its public half is registered with the account and
// served to the peers it opens direct sessions with, which pin it.

// DeviceKey is one of a user's registered device keys.
type DeviceKey struct {
	// DeviceID is the lowercase hex of the first 8 bytes of the key's
	// SHA-256: anyone can recompute it from PublicKey.
	DeviceID     string
	PublicKey    ed25519.PublicKey
	Name         string
	RegisteredAt time.Time
}

// RegisterDevice registers this device's public key under name and returns
// the account's devices, newest first. Registering the same key again
// renames it. GoDirect and AcceptDirect register the client's device key
// (WithDeviceKey) on their own.
func (c *Client) RegisterDevice(ctx context.Context, pub ed25519.PublicKey, name string) ([]DeviceKey, error) {
	reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_RegisterDevice{RegisterDevice: &parleyv1.RegisterDeviceRequest{
		PublicKey: pub, Name: name,
	}}})
	if err != nil {
		return nil, err
	}
	return deviceKeysReply(reply)
}

// DeviceKeys lists a user's registered device keys, newest first. They are
// what the server says: a direct session checks the key it connects to
// against the keys this client pinned (TrustPeerKey).
func (c *Client) DeviceKeys(ctx context.Context, username string) ([]DeviceKey, error) {
	reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_DeviceKeys{DeviceKeys: &parleyv1.DeviceKeysRequest{Username: username}}})
	if err != nil {
		return nil, err
	}
	return deviceKeysReply(reply)
}

func deviceKeysReply(reply *parleyv1.Frame) ([]DeviceKey, error) {
	r := reply.GetDeviceKeysReply()
	if r == nil {
		return nil, fmt.Errorf("%w: expected DeviceKeysReply, got %T", ErrProtocol, reply.GetBody())
	}
	out := make([]DeviceKey, 0, len(r.GetDevices()))
	for _, d := range r.GetDevices() {
		out = append(out, deviceKeyFromWire(d))
	}
	return out, nil
}

func deviceKeyFromWire(d *parleyv1.DeviceKey) DeviceKey {
	k := DeviceKey{DeviceID: d.GetDeviceId(), Name: d.GetName()}
	if len(d.GetPublicKey()) == ed25519.PublicKeySize {
		k.PublicKey = ed25519.PublicKey(d.GetPublicKey())
	}
	if ms := d.GetRegisteredAtUnixMs(); ms > 0 {
		k.RegisteredAt = time.UnixMilli(ms)
	}
	return k
}
