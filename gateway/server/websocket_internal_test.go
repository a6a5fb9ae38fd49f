package server

import (
	"bufio"
	"io"
	"net"
	"testing"

	"github.com/parleychat/parley/gateway/internal/reqbody"
	"github.com/parleychat/parley/gateway/internal/transport"
)

// hijacked is what fasthttp hands a hijack handler: reads go through its
// buffered reader, UnsafeConn is the connection it accepted.
type hijacked struct {
	net.Conn
	r io.Reader
}

func (h hijacked) Read(p []byte) (int, error) { return h.r.Read(p) }
func (h hijacked) UnsafeConn() net.Conn       { return h.Conn }

// TestTakeOver: the WebSocket is served from the TCP connection itself
// (under the HTTP listener's wrapper), so it can write without waiting
// (TryWrite), and what the HTTP server had read past the upgrade request
// is handed over, without waiting for more.
func TestTakeOver(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := reqbody.Listener(ln)
	defer rl.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	accepted, err := rl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	if _, err := client.Write([]byte("GET / HTTP/1.1\r\n\r\nfirst frame")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(accepted, 4096)
	if line, err := br.ReadString('\n'); err != nil || line != "GET / HTTP/1.1\r\n" {
		t.Fatalf("request line %q %v", line, err)
	}
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}

	nc, buffered, ok := takeOver(hijacked{Conn: accepted, r: br})
	if !ok {
		t.Fatal("not taken over")
	}
	if string(buffered) != "first frame" {
		t.Errorf("buffered %q, want the bytes after the request", buffered)
	}
	if _, ok := nc.(*net.TCPConn); !ok {
		t.Errorf("served from %T, want the *net.TCPConn", nc)
	}
	if _, err := transport.NewWebSocket(nc, 0, transport.Upgrade{}).TryWrite(nil); err != nil {
		t.Errorf("TryWrite on the taken-over connection: %v", err)
	}
	// The connection still reads (no deadline left behind).
	if _, err := client.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(nc, b); err != nil || string(b) != "more" {
		t.Errorf("read after takeOver: %q %v", b, err)
	}
}
