module github.com/parleychat/parley/clients/parley

go 1.26.0

require (
	github.com/coder/websocket v1.8.15
	github.com/parleychat/parley/protocol v0.2.0
	github.com/thesyncim/gopus v0.1.1
	google.golang.org/protobuf v1.36.12
)
