package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/parleychat/parley/protocol/wire"
)

// The WebSocket side of a member (-room-transports ws): as lean as the TCP
// one. It writes the upgrade request and reads the 101 by hand, then reads
// RFC 6455 frames straight off a buffered reader into libs/wire's pooled
// buffers (no websocket library, no copy per message beyond that), so the
// load generator costs about the same per delivery over either transport.

// wsPath is the gateway's WebSocket endpoint (docs/protocol.md §1).
const wsPath = "/v1/ws"

// wsUpgrade performs the opening handshake (RFC 6455 §4.1) on nc and
// returns the reader the frames follow on.
func wsUpgrade(nc net.Conn, host string) (*bufio.Reader, error) {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + wsPath + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 32<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return nil, fmt.Errorf("websocket upgrade: %s", resp.Status)
	}
	return br, nil
}

// wsReader reads the server's binary messages, one frame each (the gateway
// never fragments, docs/protocol.md §3; fragments are joined anyway), into
// pooled buffers; ReadRaw has wire.Reader's contract.
type wsReader struct {
	r   *bufio.Reader
	hdr [10]byte
	max int
}

var errWSClosed = errors.New("websocket closed by the gateway")

func (w *wsReader) ReadRaw() (*[]byte, error) {
	b := wire.GetRaw()
	buf := (*b)[:0]
	for {
		if _, err := io.ReadFull(w.r, w.hdr[:2]); err != nil {
			wire.PutRaw(b)
			return nil, err
		}
		fin, op := w.hdr[0]&0x80 != 0, w.hdr[0]&0x0f
		n := int(w.hdr[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(w.r, w.hdr[2:4]); err != nil {
				wire.PutRaw(b)
				return nil, err
			}
			n = int(binary.BigEndian.Uint16(w.hdr[2:]))
		case 127:
			if _, err := io.ReadFull(w.r, w.hdr[2:10]); err != nil {
				wire.PutRaw(b)
				return nil, err
			}
			n = int(binary.BigEndian.Uint64(w.hdr[2:]))
		}
		if n < 0 || len(buf)+n > w.max {
			wire.PutRaw(b)
			return nil, fmt.Errorf("websocket message above %d bytes", w.max)
		}
		if op >= 0x8 { // control: the gateway never pings; a close ends it
			if _, err := w.r.Discard(n); err != nil || op == 0x8 {
				wire.PutRaw(b)
				return nil, errWSClosed
			}
			continue
		}
		start := len(buf)
		buf = slices.Grow(buf, n)[:start+n]
		if _, err := io.ReadFull(w.r, buf[start:]); err != nil {
			*b = buf
			wire.PutRaw(b)
			return nil, err
		}
		if fin {
			break
		}
	}
	*b = buf
	return b, nil
}

// appendWSFrame appends payload as one masked binary frame (a client's
// frames must be masked, RFC 6455 §5.3).
func appendWSFrame(out, payload []byte) []byte {
	switch n := len(payload); {
	case n <= 125:
		out = append(out, 0x82, 0x80|byte(n))
	case n <= 0xffff:
		out = binary.BigEndian.AppendUint16(append(out, 0x82, 0x80|126), uint16(n))
	default:
		out = binary.BigEndian.AppendUint64(append(out, 0x82, 0x80|127), uint64(n))
	}
	var key [4]byte
	_, _ = rand.Read(key[:])
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}
