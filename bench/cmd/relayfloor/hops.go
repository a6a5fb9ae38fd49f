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
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/bench/internal/child"
)

// -hops: the pairs traffic through Parley's topology with none of Parley's
// logic. Two edge processes (the gateways' place) take the clients; a
// store process (messaging's place) stores each message in JetStream; they
// talk over NATS exactly as Parley's do for a direct message: the edge's
// request to the store, the store's JetStream publish and its ack, the
// store's reply, and an event on each of the two users' subjects (the
// sender's own copy included, as Parley sends it), which the edge each
// user is on subscribes to per user. The sender of pair i is on edge i mod
// 2 and its receiver on the other, so every message crosses from one edge
// to the other, as in msgbench's msg-direct with two gateways.
//
// What it leaves out is what Parley's processes do per message beyond
// moving it: protobuf, sessions and identity, authorisation, rate limits,
// conversations and their order (a conditional append per conversation),
// metrics. Parley against this floor is the cost of that code; this floor
// against relayfloor -jetstream is the cost of the topology itself.

const (
	storeSubject = "floor.store"
	userPrefix   = "floor.user."
)

// runEdge is an edge: a connection first sends its 4-byte index; each
// frame it sends is a request to the store, answered to it when the reply
// comes (one request at a time per connection, in order, as Parley's
// gateway handles a connection's frames); whatever arrives on the
// connection's user subject is written to it. The users' subscriptions
// share one channel and one goroutine that writes what they bring, as the
// gateway's registry does.
//
// With batch, a connection's frame is handed to one of a few batchers,
// which send whatever frames are waiting, from any connections, in one
// request, and write each its reply.
func runEdge(addr, natsURL string, batch bool) error {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	var (
		mu    sync.Mutex
		users = map[string]*conn{} // by user subject
		msgs  = make(chan *nats.Msg, 64<<10)
	)
	var reqs chan edgeReq
	if batch {
		reqs = make(chan edgeReq, 64<<10)
		for range edgeBatchers {
			go runBatcher(nc, reqs)
		}
	}
	go func() {
		for m := range msgs {
			mu.Lock()
			c := users[m.Subject]
			mu.Unlock()
			if c != nil {
				c.write(m.Data)
			}
		}
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			var id [4]byte
			if _, err := io.ReadFull(r, id[:]); err != nil {
				return
			}
			me := &conn{c: c}
			subj := userPrefix + strconv.FormatUint(uint64(binary.BigEndian.Uint32(id[:])), 10)
			mu.Lock()
			users[subj] = me
			mu.Unlock()
			sub, err := nc.ChanSubscribe(subj, msgs)
			if err != nil {
				complain("subscribe", err)
				return
			}
			defer sub.Unsubscribe()
			buf := make([]byte, 64<<10)
			req := make([]byte, 0, 64<<10)
			for {
				n, err := readFrame(r, buf)
				if err != nil {
					return
				}
				// The request: the sender's index, then its frame.
				req = append(append(req[:0], id[:]...), buf[:n]...)
				if batch {
					done := make(chan struct{})
					reqs <- edgeReq{c: me, item: slices.Clone(req), done: done}
					<-done
					continue
				}
				reply, err := nc.Request(storeSubject, req, 10*time.Second)
				if err != nil {
					complain("request", err)
					continue
				}
				me.write(reply.Data)
			}
		}()
	}
}

// edgeReq is a frame waiting for a batcher: item is the sender's index and
// the frame; done is closed once its reply has been written.
type edgeReq struct {
	c    *conn
	item []byte
	done chan struct{}
}

// edgeBatchers is how many batches an edge may have in flight.
const edgeBatchers = 4

// maxBatch bounds the frames of one batch.
const maxBatch = 64

// runBatcher sends the waiting frames in one request, as many as are
// queued (up to maxBatch), and writes each its reply.
func runBatcher(nc *nats.Conn, reqs chan edgeReq) {
	var data []byte
	batch := make([]edgeReq, 0, maxBatch)
	for r := range reqs {
		batch = append(batch[:0], r)
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		data = data[:0]
		for _, r := range batch {
			data = append(data, r.item...)
		}
		reply, err := nc.Request(storeSubject, data, 10*time.Second)
		if err != nil {
			complain("request", err)
		}
		for i, r := range batch {
			if err == nil && len(reply.Data) >= 12*(i+1) {
				r.c.write(reply.Data[12*i : 12*(i+1)])
			}
			close(r.done)
		}
	}
}

// runStore is the store: each request's frame is published to JetStream
// (asynchronously, pipelined: acks are awaited in order), and once stored
// the request is answered (the frame's send time back, a 12-byte frame)
// and the frame published to the receiver's and the sender's subjects.
// With syncStore each request is handed to one of 64 workers, which
// publishes and waits for the ack before it publishes the events and
// answers, as Parley's messaging does (libs/rpc's pool, a synchronous
// conditional append).
func runStore(natsURL string, syncStore bool) error {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := js.CreateOrUpdateStream(context.Background(), jetstream.StreamConfig{
		Name: "FLOOR", Subjects: []string{"floor.msg.>"}, Storage: jetstream.FileStorage, Duplicates: dedupWindow,
	}); err != nil {
		return err
	}
	// A request carries one or more items (several with -batch), each the
	// sender's index and its frame; the reply is their replies in order.
	type item struct {
		f        jetstream.PubAckFuture
		frame    []byte
		from, to string
	}
	type pending struct {
		m     *nats.Msg
		items []item
	}
	acks := make(chan pending, 4096)
	go func() {
		for p := range acks {
			reply := make([]byte, 0, 12*len(p.items))
			for _, it := range p.items {
				select {
				case <-it.f.Ok():
				case err := <-it.f.Err():
					complain("store", err)
				}
				reply = binary.BigEndian.AppendUint32(reply, 8)
				reply = append(reply, it.frame[4:12]...)
			}
			if err := p.m.Respond(reply); err != nil {
				complain("reply", err)
			}
			for _, it := range p.items {
				_ = nc.Publish(userPrefix+it.to, it.frame)
				_ = nc.Publish(userPrefix+it.from, it.frame)
			}
		}
	}()
	if syncStore {
		return runSyncStore(nc, js)
	}
	var seq uint64
	if _, err := nc.QueueSubscribe(storeSubject, "store", func(m *nats.Msg) {
		p := pending{m: m}
		for b := m.Data; len(b) > 0; {
			if len(b) < 4+4 {
				complain("request", fmt.Errorf("%d bytes left", len(b)))
				return
			}
			n := 4 + 4 + int(binary.BigEndian.Uint32(b[4:]))
			if n < 4+4+header || n > len(b) {
				complain("request", fmt.Errorf("item of %d bytes", n))
				return
			}
			frame := b[4:n]
			from := strconv.FormatUint(uint64(binary.BigEndian.Uint32(b)), 10)
			to := strconv.FormatUint(uint64(binary.BigEndian.Uint32(frame[4+8:])), 10)
			seq++
			f, err := js.PublishAsync("floor.msg."+from, frame[4+header:], jetstream.WithMsgID(from+":"+strconv.FormatUint(seq, 10)))
			if err != nil {
				complain("publish", err)
				return
			}
			p.items = append(p.items, item{f: f, frame: frame, from: from, to: to})
			b = b[n:]
		}
		acks <- p
	}); err != nil {
		return err
	}
	select {}
}

// syncWorkers is the -sync-store store's pool, libs/rpc's default.
const syncWorkers = 64

// runSyncStore is runStore with -sync-store. Requests carry one item (the
// edges do not batch with it).
func runSyncStore(nc *nats.Conn, js jetstream.JetStream) error {
	jobs := make(chan *nats.Msg)
	var seq atomic.Uint64
	for range syncWorkers {
		go func() {
			for m := range jobs {
				b := m.Data
				if len(b) < 4+4+header {
					complain("request", fmt.Errorf("%d bytes", len(b)))
					continue
				}
				frame := b[4:]
				from := strconv.FormatUint(uint64(binary.BigEndian.Uint32(b)), 10)
				to := strconv.FormatUint(uint64(binary.BigEndian.Uint32(frame[4+8:])), 10)
				id := from + ":" + strconv.FormatUint(seq.Add(1), 10)
				if _, err := js.Publish(context.Background(), "floor.msg."+from, frame[4+header:], jetstream.WithMsgID(id)); err != nil {
					complain("store", err)
				}
				_ = nc.Publish(userPrefix+to, frame)
				_ = nc.Publish(userPrefix+from, frame)
				reply := binary.BigEndian.AppendUint32(make([]byte, 0, 12), 8)
				if err := m.Respond(append(reply, frame[4:12]...)); err != nil {
					complain("reply", err)
				}
			}
		}()
	}
	if _, err := nc.QueueSubscribe(storeSubject, "store", func(m *nats.Msg) { jobs <- m }); err != nil {
		return err
	}
	select {}
}

// startHops starts nats-server, the store and two edges for runLoad, and
// returns the edges, the PIDs whose CPU is the server's (store and edges)
// and nats-server's PID.
func startHops(bin string, batch, syncStore bool, stops *[]func()) (edges []*server, serverPIDs []int, natsPID int, err error) {
	dir, err := os.MkdirTemp("", "relayfloor-")
	if err != nil {
		return nil, nil, 0, err
	}
	*stops = append(*stops, func() { os.RemoveAll(dir) })
	if bin, err = filepath.Abs(bin); err != nil {
		return nil, nil, 0, err
	}
	ps := &child.Set{Bin: bin, Logs: dir}
	*stops = append(*stops, ps.StopAll)
	p, url, err := ps.StartNATS(context.Background(), filepath.Join(dir, "nats"))
	if err != nil {
		return nil, nil, 0, err
	}
	storeArgs := append([]string{"-serve-store", "-nats", url}, dedupArgs()...)
	if syncStore {
		storeArgs = append(storeArgs, "-sync-store")
	}
	store, err := startProcess(storeArgs...)
	if err != nil {
		return nil, nil, 0, err
	}
	*stops = append(*stops, store.stop)
	serverPIDs = append(serverPIDs, store.cmd.Process.Pid)
	for range 2 {
		args := []string{"-hops", "-nats", url}
		if batch {
			args = append(args, "-batch")
		}
		e, err := startServer(args...)
		if err != nil {
			return nil, nil, 0, err
		}
		*stops = append(*stops, e.stop)
		edges = append(edges, e)
		serverPIDs = append(serverPIDs, e.cmd.Process.Pid)
	}
	return edges, serverPIDs, p.PID(), nil
}
