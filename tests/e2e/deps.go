package e2e

// The binaries the tests build live in other modules; these blank imports
// keep them (and nats-server, built as a separate process) in this module's
// dependency graph so `go build <pkg>` from here resolves them.
import (
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/parleychat/parley/gateway/server"
	_ "github.com/parleychat/parley/services/auth/authsvc"
	_ "github.com/parleychat/parley/services/file/filesvc"
	_ "github.com/parleychat/parley/services/mediarelay/relaysvc"
	_ "github.com/parleychat/parley/services/messaging/msgsvc"
	_ "github.com/parleychat/parley/services/presence/presencesvc"
	_ "github.com/parleychat/parley/standalone/server"
)
