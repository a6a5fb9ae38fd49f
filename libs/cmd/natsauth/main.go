// Command natsauth writes Parley's NATS permissions (libs/subject's
// Identities) as nats-server configuration: the file k8s ships
// (k8s/base/nats-auth.conf, included by nats.conf) or, with -users=false,
// the permission variables alone for a server whose users are nkeys or
// passwords of one's own.
//
//	go run ./cmd/natsauth -o ../k8s/base/nats-auth.conf
//	go run ./cmd/natsauth -o ../k8s/base/nats-auth.conf -check
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/parleychat/parley/libs/subject"
)

func main() {
	out := flag.String("o", "", "file to write (default: standard output)")
	users := flag.Bool("users", true, "include the authorization block mapping each deployable's client certificate to its permissions")
	check := flag.Bool("check", false, "do not write: fail when -o differs from what would be written")
	flag.Parse()
	if err := run(*out, *users, *check); err != nil {
		fmt.Fprintln(os.Stderr, "natsauth:", err)
		os.Exit(1)
	}
}

func run(out string, users, check bool) error {
	conf := subject.NATSConfig(users)
	switch {
	case out == "" && check:
		return errors.New("-check needs -o")
	case out == "":
		_, err := os.Stdout.Write(conf)
		return err
	case check:
		old, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		if !bytes.Equal(old, conf) {
			return fmt.Errorf("%s is stale: regenerate it with go run ./cmd/natsauth -o %s", out, out)
		}
		return nil
	default:
		return os.WriteFile(out, conf, 0o644)
	}
}
