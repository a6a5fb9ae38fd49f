package authsvc

import (
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
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

// kick tells every gateway holding userID to end the connections of
// sessionID with SessionEnded{reason, message}, except the connection
// named by spare (none when its fields are empty). Delivery is
// at-most-once, like every NATS publish: a gateway that misses it keeps
// the connection until it closes, but the session's tokens are already
// refused.
func (s *Service) kick(userID, sessionID string, reason parleyv1.ErrorCode, message string, spare identity.Origin) error {
	data, err := proto.Marshal(&internalv1.SessionKick{
		UserId: userID, SessionId: sessionID, Reason: reason, Message: message,
		ExceptGatewayId: spare.GatewayID, ExceptConnId: spare.ConnID,
	})
	if err != nil {
		return err
	}
	return s.nc.Publish(subject.SessionKick(userID), data)
}
