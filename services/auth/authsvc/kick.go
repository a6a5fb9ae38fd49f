package authsvc

import (
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Messages of the SessionEnded a kicked connection receives; shown to users.
const (
	kickTakenOver = "logged in elsewhere"
	kickResumed   = "this session was resumed on another connection"
	kickLoggedOut = "this session was logged out"
)

// requester names the client connection a request came from, as the
// gateway's headers say (subject.HeaderGatewayID, subject.HeaderConnID):
// the one connection a kick caused by that request must spare.
type requester struct{ gatewayID, connID string }

func requesterOf(m *nats.Msg) requester {
	return requester{gatewayID: m.Header.Get(subject.HeaderGatewayID), connID: m.Header.Get(subject.HeaderConnID)}
}

// known reports whether the connection is named; a gateway that predates
// the header sends no connection id.
func (r requester) known() bool { return r.gatewayID != "" && r.connID != "" }

// kick tells every gateway holding userID to end the connections of
// sessionID with SessionEnded{reason, message}, except the connection
// named by spare (none when its fields are empty). Delivery is
// at-most-once, like every NATS publish: a gateway that misses it keeps
// the connection until it closes, but the session's tokens are already
// refused.
func (s *Service) kick(userID, sessionID string, reason parleyv1.ErrorCode, message string, spare requester) error {
	data, err := proto.Marshal(&internalv1.SessionKick{
		UserId: userID, SessionId: sessionID, Reason: reason, Message: message,
		ExceptGatewayId: spare.gatewayID, ExceptConnId: spare.connID,
	})
	if err != nil {
		return err
	}
	return s.nc.Publish(subject.SessionKick(userID), data)
}
