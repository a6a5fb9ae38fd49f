module github.com/parleychat/parley/clients/parley

go 1.26.0

require (
	github.com/coder/websocket v1.8.15
	github.com/parleychat/parley/protocol v0.2.0
	github.com/quic-go/quic-go v0.65.0
	github.com/thesyncim/gopus v0.1.1
	golang.org/x/sys v0.47.0
	google.golang.org/protobuf v1.36.12
)

require (
	golang.org/x/crypto v0.54.0 // indirect
	golang.org/x/net v0.56.0 // indirect
)
