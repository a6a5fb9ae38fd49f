package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/bench/internal/child"
)

// conn is a server-side connection: writes are whole frames under a lock,
// straight from whichever goroutine has one (Parley's gateway does the
// same when nothing is queued).
type conn struct {
	mu sync.Mutex
	c  net.Conn
}

func (c *conn) write(b []byte) {
	c.mu.Lock()
	_, _ = c.c.Write(b)
	c.mu.Unlock()
}

// stored is a message waiting for its JetStream ack.
type stored struct {
	f            jetstream.PubAckFuture
	to           uint32
	reply, frame []byte
}

// runServer is the pairs relay: a connection first sends its 4-byte index;
// each frame it sends is answered (its send time back to it) and written to
// the connection whose index the frame names, after storing it in
// JetStream when natsURL is set.
func runServer(addr, natsURL string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	var js jetstream.JetStream
	if natsURL != "" {
		nc, err := nats.Connect(natsURL)
		if err != nil {
			return err
		}
		if js, err = jetstream.New(nc); err != nil {
			return err
		}
		if _, err := js.CreateOrUpdateStream(context.Background(), jetstream.StreamConfig{
			Name: "FLOOR", Subjects: []string{"floor.>"}, Storage: jetstream.FileStorage, Duplicates: dedupWindow,
		}); err != nil {
			return err
		}
	}
	var (
		mu    sync.Mutex
		conns = map[uint32]*conn{}
	)
	forward := func(to uint32, frame []byte) {
		mu.Lock()
		c := conns[to]
		mu.Unlock()
		if c != nil {
			c.write(frame)
		}
	}
	for {
		nc, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer nc.Close()
			r := bufio.NewReader(nc)
			var id [4]byte // first 4 bytes: this connection's index
			if _, err := io.ReadFull(r, id[:]); err != nil {
				return
			}
			me := &conn{c: nc}
			name := strconv.FormatUint(uint64(binary.BigEndian.Uint32(id[:])), 10)
			var acks chan stored
			if js != nil {
				// Acks are awaited in order, the reply and the forward
				// sent once the message is stored.
				acks = make(chan stored, 1024)
				defer close(acks)
				go func() {
					for a := range acks {
						select {
						case <-a.f.Ok():
							me.write(a.reply)
							forward(a.to, a.frame)
						case err := <-a.f.Err():
							complain("store", err)
						}
					}
				}()
			}
			mu.Lock()
			conns[binary.BigEndian.Uint32(id[:])] = me
			mu.Unlock()
			buf := make([]byte, 64<<10)
			var seq uint64
			for {
				n, err := readFrame(r, buf)
				if err != nil {
					return
				}
				reply := make([]byte, 12) // the send time back
				binary.BigEndian.PutUint32(reply, 8)
				copy(reply[4:], buf[4:12])
				to := binary.BigEndian.Uint32(buf[12:16])
				if acks == nil {
					me.write(reply)
					forward(to, buf[:n])
					continue
				}
				seq++
				f, err := js.PublishAsync("floor."+name, buf[16:n], jetstream.WithMsgID(name+":"+strconv.FormatUint(seq, 10)))
				if err != nil {
					complain("publish", err) // the message is lost: received/s shows it
					continue
				}
				acks <- stored{f: f, to: to, reply: reply, frame: slices.Clone(buf[:n])}
			}
		}()
	}
}

// runLoad measures the pairs relay (with JetStream when withJS), or with
// hops Parley's topology (hops.go).
func runLoad(pairs int, rateList string, dur time.Duration, size int, withJS, hops, batch, syncStore bool, bin string) error {
	var (
		edges      []*server
		serverPIDs []int
		natsPID    int
		stops      []func()
	)
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	switch {
	case hops:
		var err error
		if edges, serverPIDs, natsPID, err = startHops(bin, batch, syncStore, &stops); err != nil {
			return err
		}
	default:
		var args []string
		if withJS {
			dir, err := os.MkdirTemp("", "relayfloor-")
			if err != nil {
				return err
			}
			stops = append(stops, func() { os.RemoveAll(dir) })
			if bin, err = filepath.Abs(bin); err != nil {
				return err
			}
			ps := &child.Set{Bin: bin, Logs: dir}
			stops = append(stops, ps.StopAll)
			p, url, err := ps.StartNATS(context.Background(), filepath.Join(dir, "nats"))
			if err != nil {
				return err
			}
			natsPID = p.PID()
			args = append(args, append([]string{"-nats", url}, dedupArgs()...)...)
		}
		srv, err := startServer(args...)
		if err != nil {
			return err
		}
		stops = append(stops, srv.stop)
		edges, serverPIDs = []*server{srv}, []int{srv.cmd.Process.Pid}
	}
	lat := &latencies{start: time.Now()}
	senders := make([]net.Conn, pairs)
	for i := range pairs {
		for _, idx := range []int{2 * i, 2*i + 1} {
			// With two edges, the sender on edge i mod 2, its receiver on
			// the other.
			c, err := edges[(i+idx%2)%len(edges)].dial(binary.BigEndian.AppendUint32(nil, uint32(idx)))
			if err != nil {
				return err
			}
			receiver := idx%2 == 1
			if !receiver {
				senders[i] = c
			}
			go func() {
				r := bufio.NewReader(c)
				buf := make([]byte, 64<<10)
				for {
					if _, err := readFrame(r, buf); err != nil {
						return
					}
					// A receiver's frames are messages; a sender gets
					// replies and, with -hops, its own copies.
					if receiver {
						lat.add(lat.of(buf))
					}
				}
			}()
		}
	}
	mode := "relay only"
	switch {
	case hops && batch:
		mode = "Parley's topology, requests batched: 2 edges and a store over NATS, JetStream (nats-server -js, file store)"
	case hops:
		mode = "Parley's topology: 2 edges and a store over NATS, JetStream (nats-server -js, file store)"
	case withJS:
		mode = "relay + JetStream (nats-server -js, file store)"
	}
	fmt.Printf("relayfloor: %s; %d pairs, %d-byte texts, %v per level\n", mode, pairs, size, dur)
	fmt.Printf("%10s %10s %10s %10s %10s %8s %8s %8s %8s\n", "rate", "received/s", "p50", "p99", "max", "server", "nats", "loadgen", "machine")
	meter := &cpuMeter{pids: append(append([]int(nil), serverPIDs...), natsPID)}
	return levels(rateList, func(rate float64) {
		lat.reset()
		meter.begin()
		openLoop(senders, rate, dur, lat.start, func(i int) []byte {
			f := make([]byte, 4+header+size)
			binary.BigEndian.PutUint32(f, uint32(header+size))
			binary.BigEndian.PutUint32(f[12:], uint32(2*i+1))
			return f
		})
		time.Sleep(time.Second) // drain
		cpu := meter.end()
		var srv float64
		for _, c := range cpu[:len(serverPIDs)] {
			srv += c
		}
		rest := cpu[len(serverPIDs):] // nats, load generator, machine
		q := lat.quantiles(0.50, 0.99, 1)
		fmt.Printf("%10.0f %10.0f %10s %10s %10s %8.2f %8.2f %8.2f %8.2f\n", rate, float64(lat.n.Load())/dur.Seconds(),
			q[0], q[1], q[2], srv, rest[0], rest[1], rest[2])
	})
}
