package conn

import (
	"testing"

	"github.com/parleychat/parley/libs/subject"
)

// TestRoutesAllowedByNATSPermissions: every request a client may send
// goes to a subject the gateway's NATS identity may publish to
// (libs/subject/permissions.go); a route added without its permission
// would time out in a secured cluster.
func TestRoutesAllowedByNATSPermissions(t *testing.T) {
	gw, ok := subject.IdentityOf("gateway")
	if !ok {
		t.Fatal("no gateway identity")
	}
	for _, r := range routes {
		if !gw.MayPublish(r.subject) {
			t.Errorf("route %s: the gateway may not publish to %s", r.request, r.subject)
		}
	}
}
