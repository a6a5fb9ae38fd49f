package parley

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// transport carries frames over one network connection. readFrame is called
// by one goroutine at a time, writeFrames by another; close may be called
// from anywhere, any number of times, and unblocks both.
type transport interface {
	readFrame() (*parleyv1.Frame, error)
	// writeFrames sends fs, coalesced where the transport allows; buf is
	// scratch space the caller may pass back next time.
	writeFrames(fs []*parleyv1.Frame, buf []byte) ([]byte, error)
	close()
}

// dialTransport opens the network connection for addr.
func dialTransport(ctx context.Context, addr address, cfg *config) (transport, error) {
	switch addr.kind {
	case kindTCP:
		nc, err := cfg.dialer.DialContext(ctx, "tcp", addr.host)
		if err != nil {
			return nil, err
		}
		return newStreamTransport(nc, cfg.maxFrameSize), nil
	case kindTLS:
		d := &tls.Dialer{NetDialer: cfg.dialer, Config: tlsConfigFor(addr, cfg)}
		nc, err := d.DialContext(ctx, "tcp", addr.host)
		if err != nil {
			return nil, err
		}
		return newStreamTransport(nc, cfg.maxFrameSize), nil
	default:
		return dialWS(ctx, addr, cfg)
	}
}

func tlsConfigFor(addr address, cfg *config) *tls.Config {
	var c *tls.Config
	if cfg.tlsConfig != nil {
		c = cfg.tlsConfig.Clone()
	} else {
		c = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if c.ServerName == "" {
		c.ServerName = addr.hostname()
	}
	return c
}

// streamTransport: TCP or TLS, each frame a 4-byte big-endian length and the
// protobuf encoding (docs/protocol.md §2).
type streamTransport struct {
	nc net.Conn
	r  *wire.Reader
}

func newStreamTransport(nc net.Conn, max uint32) *streamTransport {
	// The bufio layer turns many small frames into few reads; wire.Reader
	// checks each length against max before allocating.
	return &streamTransport{nc: nc, r: wire.NewReader(bufio.NewReaderSize(nc, 16<<10), max)}
}

func (t *streamTransport) readFrame() (*parleyv1.Frame, error) { return t.r.ReadFrame() }

func (t *streamTransport) writeFrames(fs []*parleyv1.Frame, buf []byte) ([]byte, error) {
	buf = buf[:0]
	for _, f := range fs {
		var err error
		if buf, err = wire.AppendFrame(buf, f); err != nil {
			return buf, err
		}
	}
	// A peer that stops reading must not hang the writer forever.
	_ = t.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := t.nc.Write(buf)
	return buf, err
}

func (t *streamTransport) close() { _ = t.nc.Close() }

// wsTransport: WebSocket, one frame per binary message without the length
// prefix (docs/protocol.md §3).
type wsTransport struct {
	c *websocket.Conn
}

func dialWS(ctx context.Context, addr address, cfg *config) (transport, error) {
	ht := &http.Transport{
		DialContext:         cfg.dialer.DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	if addr.kind == kindWSS {
		ht.TLSClientConfig = tlsConfigFor(addr, cfg)
	}
	c, resp, err := websocket.Dial(ctx, addr.url, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: ht},
	})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(int64(cfg.maxFrameSize))
	return &wsTransport{c: c}, nil
}

func (t *wsTransport) readFrame() (*parleyv1.Frame, error) {
	typ, b, err := t.c.Read(context.Background())
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageBinary {
		return nil, fmt.Errorf("%w: text websocket message", ErrProtocol)
	}
	return wire.Decode(b)
}

func (t *wsTransport) writeFrames(fs []*parleyv1.Frame, buf []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	for _, f := range fs {
		var err error
		buf, err = marshalAppend(buf[:0], f)
		if err != nil {
			return buf, err
		}
		if err := t.c.Write(ctx, websocket.MessageBinary, buf); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

func (t *wsTransport) close() { _ = t.c.CloseNow() }
