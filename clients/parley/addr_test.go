package parley

import "testing"

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		kind    transportKind
		host    string
		wantErr bool
	}{
		{in: "127.0.0.1:7420", want: "tcp://127.0.0.1:7420", kind: kindTCP, host: "127.0.0.1"},
		{in: "tcp://chat.example.org:9000", want: "tcp://chat.example.org:9000", kind: kindTCP, host: "chat.example.org"},
		{in: "TCP://localhost", want: "tcp://localhost:7420", kind: kindTCP, host: "localhost"},
		{in: "localhost", want: "tcp://localhost:7420", kind: kindTCP, host: "localhost"},
		{in: "tls://chat.example.org:7420", want: "tls://chat.example.org:7420", kind: kindTLS, host: "chat.example.org"},
		{in: "tls://[::1]:7420", want: "tls://[::1]:7420", kind: kindTLS, host: "::1"},
		{in: "tcp://[::1]", want: "tcp://[::1]:7420", kind: kindTCP, host: "::1"},
		{in: "ws://127.0.0.1:7480/v1/ws", want: "ws://127.0.0.1:7480/v1/ws", kind: kindWS, host: "127.0.0.1"},
		{in: "ws://127.0.0.1:7480", want: "ws://127.0.0.1:7480/v1/ws", kind: kindWS, host: "127.0.0.1"},
		{in: "wss://chat.example.org/parley", want: "wss://chat.example.org/parley", kind: kindWSS, host: "chat.example.org"},
		{in: "  tcp://h:1  ", want: "tcp://h:1", kind: kindTCP, host: "h"},
		{in: "", wantErr: true},
		{in: "http://h:1", wantErr: true},
		{in: "tcp://", wantErr: true},
		{in: "tcp://h:1/path", wantErr: true},
		{in: "ws://", wantErr: true},
		{in: "ws://[::1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := parseAddr(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseAddr(%q) = %v, want an error", tt.in, a)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseAddr(%q): %v", tt.in, err)
			}
			if a.String() != tt.want || a.kind != tt.kind || a.hostname() != tt.host {
				t.Errorf("parseAddr(%q) = %s (kind %v, hostname %q), want %s (kind %v, hostname %q)",
					tt.in, a, a.kind, a.hostname(), tt.want, tt.kind, tt.host)
			}
		})
	}
}
