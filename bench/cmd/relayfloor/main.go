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
	"flag"
	"fmt"
	"os"
	"time"
)

// A frame is a 4-byte big-endian length and a body: the 8-byte send time
// (ns since the load generator started), the 4-byte receiver index, the
// text.
const header = 12

// dedupWindow is the JetStream stream's duplicate window (-dedup-window):
// nats-server keeps every message id published within it, in memory.
var dedupWindow time.Duration

// dedupArgs passes -dedup-window on to a child process.
func dedupArgs() []string { return []string{"-dedup-window", dedupWindow.String()} }

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
	hops := flag.Bool("hops", false, "Parley's topology instead of one relay: two edge processes and a store process over NATS, storing in JetStream (hops.go); with -serve: run an edge")
	batch := flag.Bool("batch", false, "with -hops: the edges send the frames waiting from all their connections in one request to the store (and it answers them in one reply)")
	syncStore := flag.Bool("sync-store", false, "with -hops (or -serve-store): the store publishes each message to JetStream and waits for its ack from one of a pool of 64 workers, as Parley's messaging does, instead of asynchronously and pipelined")
	serveStore := flag.Bool("serve-store", false, "run the -hops store process (used by the load generator)")
	flag.DurationVar(&dedupWindow, "dedup-window", 2*time.Minute, "with -jetstream or -hops: the stream's duplicate window (how long a Nats-Msg-Id is remembered; Parley's messaging keeps client keys for -msg-dedup-window, 10m by default, and msgbench passes its value)")
	flag.Parse()
	if *serveStore {
		if err := runStore(*natsURL, *syncStore); err != nil {
			fmt.Fprintln(os.Stderr, "relayfloor:", err)
			os.Exit(1)
		}
		return
	}
	if *serve != "" && *hops {
		if err := runEdge(*serve, *natsURL, *batch); err != nil {
			fmt.Fprintln(os.Stderr, "relayfloor:", err)
			os.Exit(1)
		}
		return
	}
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
	if err := runLoad(*pairs, *rates, *dur, *size, *js, *hops, *batch, *syncStore, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "relayfloor:", err)
		os.Exit(1)
	}
}
