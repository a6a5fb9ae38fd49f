// Command relayfloor measures what this machine can do at all for msgbench's
// msg-direct traffic pattern, with none of Parley in the way: a minimal
// relay server (a separate process: this binary with -serve) and the same
// open-loop load as msgbench (pairs of TCP connections, each sender sends a
// 64-byte frame, the server answers the sender and writes the message to
// the receiver). No NATS, no storage, no protobuf, no authentication: one
// read and two direct writes per message in the server, one write and two
// reads in the clients. The rate it sustains with p99 under 20 ms is an
// upper bound for any server on this machine with its clients beside it;
// Parley adds persistence and the hops between its services to this floor.
//
// With -jetstream the server also stores every message in a JetStream
// stream (a nats-server -js process, file store, one subject per pair, a
// Nats-Msg-Id on each publish) before it answers and forwards, published
// asynchronously (pipelined, acks awaited in order per connection): the
// floor for a relay that persists before acknowledging, as Parley does.
//
//	relayfloor -rates 5000,10000,20000,40000 -pairs 200 -duration 10s
//	relayfloor -jetstream -bin bin          (needs bin/nats-server)
//
// With -room N it measures msg-room's pattern instead: N members connected,
// 4 senders posting open loop at the total rates given, and a server that
// appends every posted message to one buffer and writes that buffer to
// every member each 20 ms (the batching Parley's gateway does, as simply as
// it can be done); deliveries/s = messages x members.
//
//	relayfloor -room 1000 -rates 20,50,100,200
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/bench/internal/child"
)

// A frame is a 4-byte big-endian length and a body: the 8-byte send time
// (ns since the load generator started), the 4-byte receiver index, the
// text.
const header = 12

func main() {
	serve := flag.String("serve", "", "run the relay server on this address (used by the load generator)")
	pairs := flag.Int("pairs", 200, "sender/receiver pairs")
	rates := flag.String("rates", "5000,10000,20000,40000", "open-loop total rates, messages/s")
	dur := flag.Duration("duration", 10*time.Second, "duration of each level")
	size := flag.Int("text-bytes", 64, "text size")
	js := flag.Bool("jetstream", false, "the server stores each message in JetStream before answering")
	natsURL := flag.String("nats", "", "with -serve: NATS server to store in (set by the load generator)")
	bin := flag.String("bin", "bin", "with -jetstream: directory with nats-server")
	room := flag.Int("room", 0, "measure room fan-out to this many members instead of pairs")
	roomServe := flag.Bool("room-serve", false, "with -serve: run the room server")
	flag.Parse()
	if *serve != "" && *roomServe {
		if err := runRoomServer(*serve); err != nil {
			fmt.Fprintln(os.Stderr, "relayfloor:", err)
			os.Exit(1)
		}
		return
	}
	if *room > 0 {
		if err := runRoomLoad(*room, *rates, *dur, *size); err != nil {
			fmt.Fprintln(os.Stderr, "relayfloor:", err)
			os.Exit(1)
		}
		return
	}
	if *serve != "" {
		if err := runServer(*serve, *natsURL); err != nil {
			fmt.Fprintln(os.Stderr, "relayfloor:", err)
			os.Exit(1)
		}
		return
	}
	if err := runLoad(*pairs, *rates, *dur, *size, *js, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "relayfloor:", err)
		os.Exit(1)
	}
}

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

// complaints counts the server's errors; only the first few are printed
// (an overloaded level can fail thousands of publishes).
var complaints atomic.Int64

func complain(what string, err error) {
	if complaints.Add(1) <= 3 {
		fmt.Fprintf(os.Stderr, "relayfloor: %s: %v (further errors not shown)\n", what, err)
	}
}

// stored is a message waiting for its JetStream ack.
type stored struct {
	f            jetstream.PubAckFuture
	to           uint32
	reply, frame []byte
}

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
			Name: "FLOOR", Subjects: []string{"floor.>"}, Storage: jetstream.FileStorage,
		}); err != nil {
			return err
		}
	}
	var (
		mu    sync.Mutex
		conns = map[uint32]*conn{}
	)
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
						case err := <-a.f.Err():
							complain("store", err)
							continue
						}
						me.write(a.reply)
						mu.Lock()
						to := conns[a.to]
						mu.Unlock()
						if to != nil {
							to.write(a.frame)
						}
					}
				}()
			}
			var seq uint64
			mu.Lock()
			conns[binary.BigEndian.Uint32(id[:])] = me
			mu.Unlock()
			buf := make([]byte, 64<<10)
			reply := make([]byte, 4+8)
			for {
				if _, err := io.ReadFull(r, buf[:4]); err != nil {
					return
				}
				n := int(binary.BigEndian.Uint32(buf[:4]))
				if n < header || n > len(buf)-4 {
					return
				}
				if _, err := io.ReadFull(r, buf[4:4+n]); err != nil {
					return
				}
				if acks != nil {
					seq++
					me := strconv.FormatUint(uint64(binary.BigEndian.Uint32(id[:])), 10)
					f, err := js.PublishAsync("floor."+me, buf[16:4+n],
						jetstream.WithMsgID(me+":"+strconv.FormatUint(seq, 10)))
					if err != nil {
						complain("publish", err) // the message is lost: received/s shows it
						continue
					}
					r := make([]byte, 12)
					binary.BigEndian.PutUint32(r, 8)
					copy(r[4:], buf[4:12])
					acks <- stored{f: f, to: binary.BigEndian.Uint32(buf[12:16]), reply: r, frame: slices.Clone(buf[:4+n])}
					continue
				}
				// Reply to the sender (its send time), then the message to
				// the receiver.
				binary.BigEndian.PutUint32(reply, 8)
				copy(reply[4:], buf[4:12])
				me.write(reply)
				mu.Lock()
				to := conns[binary.BigEndian.Uint32(buf[12:16])]
				mu.Unlock()
				if to != nil {
					to.write(buf[:4+n])
				}
			}
		}()
	}
}

func runLoad(pairs int, rateList string, dur time.Duration, size int, withJS bool, bin string) error {
	addr, err := child.FreeAddr()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"-serve", addr}
	natsPID := 0
	if withJS {
		dir, err := os.MkdirTemp("", "relayfloor-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if bin, err = filepath.Abs(bin); err != nil {
			return err
		}
		ps := &child.Set{Bin: bin, Logs: dir}
		defer ps.StopAll()
		p, url, err := ps.StartNATS(context.Background(), filepath.Join(dir, "nats"))
		if err != nil {
			return err
		}
		natsPID = p.PID()
		args = append(args, "-nats", url)
	}
	srv := exec.Command(self, args...)
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Process.Kill()
	dial := func() (net.Conn, error) {
		for i := 0; ; i++ {
			c, err := net.Dial("tcp", addr)
			if err == nil || i > 100 {
				return c, err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	start := time.Now()
	var (
		mu      sync.Mutex
		lat     []time.Duration
		got     atomic.Int64
		replies atomic.Int64
	)
	senders := make([]net.Conn, pairs)
	for i := range pairs {
		for j, idx := range []int{2 * i, 2*i + 1} {
			c, err := dial()
			if err != nil {
				return err
			}
			_, _ = c.Write(binary.BigEndian.AppendUint32(nil, uint32(idx)))
			receiver := j == 1
			if !receiver {
				senders[i] = c
			}
			go func() {
				r := bufio.NewReader(c)
				buf := make([]byte, 64<<10)
				for {
					if _, err := io.ReadFull(r, buf[:4]); err != nil {
						return
					}
					n := int(binary.BigEndian.Uint32(buf[:4]))
					if _, err := io.ReadFull(r, buf[4:4+n]); err != nil {
						return
					}
					if !receiver {
						replies.Add(1)
						continue
					}
					d := time.Since(start) - time.Duration(binary.BigEndian.Uint64(buf[4:12]))
					got.Add(1)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
			}()
		}
	}
	mode := "relay only"
	if withJS {
		mode = "relay + JetStream (nats-server -js, file store)"
	}
	fmt.Printf("relayfloor: %s; %d pairs, %d-byte texts, %v per level\n", mode, pairs, size, dur)
	fmt.Printf("%10s %10s %10s %10s %10s %8s %8s %8s %8s\n", "rate", "received/s", "p50", "p99", "max", "server", "nats", "loadgen", "machine")
	for _, f := range strings.Split(rateList, ",") {
		rate, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || rate <= 0 {
			return fmt.Errorf("bad rate %q", f)
		}
		mu.Lock()
		lat = lat[:0]
		mu.Unlock()
		got.Store(0)
		natsCPU := func() float64 {
			if natsPID == 0 {
				return 0
			}
			return child.CPUSeconds(strconv.Itoa(natsPID))
		}
		cs, cn, cl, cm, t0 := child.CPUSeconds(strconv.Itoa(srv.Process.Pid)), natsCPU(), child.CPUSeconds("self"), child.MachineBusySeconds(), time.Now()
		interval := time.Duration(float64(time.Second) * float64(pairs) / rate)
		var wg sync.WaitGroup
		for i, c := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				frame := make([]byte, 4+header+size)
				binary.BigEndian.PutUint32(frame, uint32(header+size))
				binary.BigEndian.PutUint32(frame[12:], uint32(2*i+1))
				due := time.Now().Add(interval * time.Duration(i) / time.Duration(pairs))
				end := t0.Add(dur)
				for due.Before(end) {
					time.Sleep(time.Until(due))
					binary.BigEndian.PutUint64(frame[4:], uint64(due.Sub(start)))
					if _, err := c.Write(frame); err != nil {
						return
					}
					due = due.Add(interval)
				}
			}()
		}
		wg.Wait()
		time.Sleep(time.Second) // drain
		wall := time.Since(t0).Seconds()
		mu.Lock()
		l := slices.Clone(lat)
		mu.Unlock()
		slices.Sort(l)
		q := func(p float64) time.Duration {
			if len(l) == 0 {
				return 0
			}
			return l[min(len(l)-1, int(p*float64(len(l))))]
		}
		fmt.Printf("%10.0f %10.0f %10s %10s %10s %8.2f %8.2f %8.2f %8.2f\n", rate, float64(got.Load())/dur.Seconds(),
			q(0.50).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), q(1).Round(10*time.Microsecond),
			(child.CPUSeconds(strconv.Itoa(srv.Process.Pid))-cs)/wall, (natsCPU()-cn)/wall, (child.CPUSeconds("self")-cl)/wall,
			(child.MachineBusySeconds()-cm)/wall)
	}
	return nil
}
