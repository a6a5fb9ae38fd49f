package relaysvc_test

import (
	"errors"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/services/mediarelay/relaysvc"
)

func TestConfigDefaults(t *testing.T) {
	c := relaysvc.DefaultConfig()
	if c.RingTimeout != 45*time.Second || c.ParticipantTimeout != 8*time.Second || c.Heartbeat != 250*time.Millisecond ||
		c.DeadAfter != time.Second || c.RosterInterval != 2*time.Second || c.MaxSpeakers != 3 || c.ForwardAll != 4 {
		t.Fatalf("defaults %+v differ from the design", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*relaysvc.Config)
	}{
		{"replica id with a dot", func(c *relaysvc.Config) { c.ReplicaID = "relay.1" }},
		{"no ring timeout", func(c *relaysvc.Config) { c.RingTimeout = 0 }},
		{"negative participant timeout", func(c *relaysvc.Config) { c.ParticipantTimeout = -time.Second }},
		{"dead before two heartbeats", func(c *relaysvc.Config) { c.DeadAfter = 300 * time.Millisecond }},
		{"no speakers", func(c *relaysvc.Config) { c.MaxSpeakers = 0 }},
		{"negative forward-all", func(c *relaysvc.Config) { c.ForwardAll = -1 }},
		{"six KV replicas", func(c *relaysvc.Config) { c.KVReplicas = 6 }},
		{"no workers", func(c *relaysvc.Config) { c.Workers = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := relaysvc.DefaultConfig()
			tc.edit(&c)
			if err := c.Validate(); !errors.Is(err, relaysvc.ErrBadConfig) {
				t.Fatalf("Validate = %v, want ErrBadConfig", err)
			}
			if _, err := relaysvc.New(c, service.Deps{}); !errors.Is(err, relaysvc.ErrBadConfig) {
				t.Fatalf("New = %v, want ErrBadConfig", err)
			}
		})
	}
}
