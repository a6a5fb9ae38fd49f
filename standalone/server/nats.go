package server

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startNATS runs nats-server in this process with JetStream stored under
// dir. With listen empty it opens no port at all: the services connect
// in-process. With listen set ("127.0.0.1:4222") separate processes can join
// (a gateway on another port, extra service replicas). With token set,
// every client must present it, in-process ones included.
func startNATS(dir, listen, token string, log *slog.Logger) (*natsserver.Server, error) {
	opts := &natsserver.Options{
		ServerName:    "parleyd",
		JetStream:     true,
		StoreDir:      filepath.Join(dir, "nats"),
		NoSigs:        true,
		NoLog:         true,
		Authorization: token,
	}
	if listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := splitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("nats listen address %q: %w", listen, err)
		}
		opts.Host, opts.Port = host, port
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats not ready within 15s")
	}
	if listen != "" {
		log.Info("embedded nats listening", "url", ns.ClientURL())
	}
	return ns, nil
}

// connectInProcess opens a client connection to the embedded server without
// a socket, presenting token when there is one.
func connectInProcess(ns *natsserver.Server, name, token string, log *slog.Logger) (*nats.Conn, error) {
	return nats.Connect("", nats.InProcessServer(ns), nats.Name(name), nats.MaxReconnects(-1), nats.Token(token),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("nats async error", "client", name, "subject", subj, "err", err)
		}))
}
