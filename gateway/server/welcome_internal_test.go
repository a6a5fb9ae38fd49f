package server

import "testing"

// TestValidHost: only a plain host[:port] from a client goes into
// Welcome.http_url.
func TestValidHost(t *testing.T) {
	for h, want := range map[string]bool{
		"chat.example.com":      true,
		"chat.example.com:7480": true,
		"127.0.0.1":             true,
		"127.0.0.1:7480":        true,
		"[::1]:7480":            true,
		"::1":                   true,
		"localhost":             true,
		"":                      false,
		"chat.example.com/x":    false,
		"a b":                   false,
		"evil.com@x":            false,
		"host:port:x":           false,
		"[::1":                  false,
		":7480":                 false,
		"-a.example":            false,
		"héllo.example":         false,
		"x\xff":                 false,
	} {
		if got := validHost(h); got != want {
			t.Errorf("validHost(%q) = %v, want %v", h, got, want)
		}
	}
}
