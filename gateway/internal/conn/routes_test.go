package conn

import (
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// TestRoutes: every route names a request and a reply that are message
// members of Frame's body, once each, and serves a request to a subject.
func TestRoutes(t *testing.T) {
	fields := new(parleyv1.Frame).ProtoReflect().Descriptor().Fields()
	member := func(name protoreflect.Name) bool {
		fd := fields.ByName(name)
		return fd != nil && fd.ContainingOneof() == bodyOneof && fd.Message() != nil
	}
	seen := map[protoreflect.Name]bool{}
	for _, r := range routes {
		if !member(r.request) {
			t.Errorf("route %q: no such Frame body member", r.request)
		}
		if !member(r.reply) || r.replyField == nil || r.replyType == nil {
			t.Errorf("route %q: reply %q is no Frame body member", r.request, r.reply)
		}
		if seen[r.request] {
			t.Errorf("route %q listed twice", r.request)
		}
		seen[r.request] = true
		if r.subject == "" {
			t.Errorf("route %q has no subject", r.request)
		}
		if routeOf[r.request] == nil {
			t.Errorf("route %q not indexed", r.request)
		}
	}
	for _, name := range []protoreflect.Name{"hello", "ping", "pong"} {
		if routeOf[name] != nil {
			t.Errorf("%q is routed: dispatch answers it itself", name)
		}
	}
}

// TestRoutesMatchProtocol checks the routing table against the table of
// Frame body members in docs/protocol.md §4, both ways: every request
// documented there is routed, with the documented reply, and every routed
// request is documented. It checks §5's list of the requests allowed
// without a session against the routes that open one.
func TestRoutesMatchProtocol(t *testing.T) {
	b, err := os.ReadFile("../../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	documented, replies := protocolRequests(t, section(t, doc, "## 4. "))

	routed := map[string]string{} // request -> reply
	for _, r := range routes {
		routed[string(r.request)] = string(r.reply)
	}
	for _, req := range slices.Sorted(maps.Keys(documented)) {
		reply, ok := routed[req]
		switch {
		case !ok:
			t.Errorf("docs/protocol.md §4 documents request %q; the gateway does not route it", req)
		case replies[req] == "":
			t.Errorf("docs/protocol.md §4 documents no reply to %q (the gateway answers %q)", req, reply)
		case replies[req] != reply:
			t.Errorf("request %q: docs/protocol.md §4 says the reply is %q, the gateway answers %q", req, replies[req], reply)
		}
	}
	for _, req := range slices.Sorted(maps.Keys(routed)) {
		if !documented[req] {
			t.Errorf("the gateway routes %q; docs/protocol.md §4 does not document it as a request", req)
		}
	}
	for req := range replies {
		if !documented[req] {
			t.Errorf("docs/protocol.md §4 documents a reply to %q, which it does not list as a request", req)
		}
	}

	// §5: "After Welcome the connection is **unauthenticated**: only
	// `register`, `login`, `resume` and `ping` are accepted".
	m := regexp.MustCompile("(?s)\\*\\*unauthenticated\\*\\*: only (.*?) are\\s+accepted").FindStringSubmatch(section(t, doc, "## 5. "))
	if m == nil {
		t.Fatal("docs/protocol.md §5: no sentence listing what an unauthenticated connection may send")
	}
	var open []string
	for _, name := range regexp.MustCompile("`([a-z0-9_]+)`").FindAllStringSubmatch(m[1], -1) {
		if documented[name[1]] {
			open = append(open, name[1])
		}
	}
	var opening []string
	for _, r := range routes {
		if r.access == opensSession {
			opening = append(opening, string(r.request))
		}
	}
	slices.Sort(open)
	slices.Sort(opening)
	if !slices.Equal(open, opening) {
		t.Errorf("docs/protocol.md §5 allows %v without a session; the gateway allows %v", open, opening)
	}
}

// section returns doc's section starting with the heading prefix, up to the
// next heading of its level.
func section(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+heading)
	if i < 0 {
		t.Fatalf("docs/protocol.md has no section %q", heading)
	}
	rest := doc[i+1:]
	if j := strings.Index(rest[len(heading):], "\n## "); j >= 0 {
		rest = rest[:len(heading)+j]
	}
	return rest
}

// protocolRequests parses the body member table of docs/protocol.md §4:
// rows "| # | `member` (Type) | direction | kind |". It returns the members
// whose kind is a request, and for each request the member its "reply to
// a, b, c" row names. Any row it cannot read fails the test: the table must
// stay machine-readable.
func protocolRequests(t *testing.T, sec string) (requests map[string]bool, replies map[string]string) {
	t.Helper()
	numbered := regexp.MustCompile(`^\| \d`) // the body table's rows; the envelope's table above it has none
	row := regexp.MustCompile("^\\| (\\d+) \\| `([a-z0-9_]+)` \\(\\w+\\) \\| ([^|]+?) \\| ([^|]+?) \\|$")
	name := regexp.MustCompile(`^[a-z0-9_]+$`)
	requests, replies = map[string]bool{}, map[string]string{}
	replyRows := map[string][]string{}
	rows := 0
	for _, line := range strings.Split(sec, "\n") {
		if !numbered.MatchString(line) {
			continue
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("docs/protocol.md §4: cannot read row %q", line)
			continue
		}
		rows++
		member, dir, kind := m[2], m[3], m[4]
		switch {
		case strings.HasPrefix(kind, "request"):
			if dir != "C→S" {
				t.Errorf("docs/protocol.md §4: request %q goes %s", member, dir)
			}
			requests[member] = true
		case member == "error":
			// "reply to a failed request, or connection-level error": any
			// request's.
		case strings.HasPrefix(kind, "reply to "):
			for _, req := range strings.Split(strings.TrimPrefix(kind, "reply to "), ",") {
				req = strings.TrimSpace(req)
				if !name.MatchString(req) {
					t.Errorf("docs/protocol.md §4: %q's row names %q, not a member", member, req)
					continue
				}
				replyRows[req] = append(replyRows[req], member)
			}
		}
	}
	if rows == 0 {
		t.Fatal("docs/protocol.md §4: no body member table")
	}
	for req, members := range replyRows {
		if len(members) > 1 {
			t.Errorf("docs/protocol.md §4: %q has replies %v", req, members)
		}
		replies[req] = members[0]
	}
	return requests, replies
}
