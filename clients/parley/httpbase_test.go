package parley

import "testing"

// TestHTTPBase: where file transfers go: the option, else what the
// gateway announced in Welcome.http_url, else a guess from the dial
// address.
func TestHTTPBase(t *testing.T) {
	tests := []struct {
		addr, option, announced, want string
	}{
		{"tcp://chat.example.org:7420", "", "", "http://chat.example.org:7480"},
		{"tls://chat.example.org:7420", "", "", "https://chat.example.org:7480"},
		{"ws://chat.example.org:9000/v1/ws", "", "", "http://chat.example.org:9000"},
		{"wss://chat.example.org/v1/ws", "", "", "https://chat.example.org"},
		{"tcp://10.0.0.5:7420", "", "http://10.0.0.5:18080", "http://10.0.0.5:18080"},
		{"tls://chat.example.org:7420", "", "https://files.example.org/parley/", "https://files.example.org/parley"},
		{"tls://chat.example.org:7420", "https://mine.example.org:1/", "https://files.example.org", "https://mine.example.org:1"},
		{"tcp://h:1", "", "ftp://h:2", "http://h:7480"}, // not an HTTP URL: ignored
	}
	for _, tt := range tests {
		a, err := parseAddr(tt.addr)
		if err != nil {
			t.Fatal(err)
		}
		c := &Client{addr: a}
		if tt.option != "" {
			WithHTTPBase(tt.option)(&c.cfg)
		}
		if tt.announced != "" {
			c.welcome = Welcome{HTTPURL: tt.announced}
		}
		if got := c.HTTPBase(); got != tt.want {
			t.Errorf("%s, option %q, announced %q: HTTPBase %q, want %q", tt.addr, tt.option, tt.announced, got, tt.want)
		}
	}
}
