// Package store keeps the presence state in Redis: which connections every
// gateway holds, and from that who is online. All changes run as Lua scripts
// (lua.go), atomically, so several presence replicas can share one Redis.
//
// # Data model
//
// Every key starts with the configured prefix P (default "parley:presence:").
//
//	P+"gw:"+gateway      hash  conn_id -> member, member = JSON ["user_id","session_id","username"]
//	P+"user:"+user       hash  len(gateway)+":"+gateway+conn_id -> session_id (one field per live connection)
//	P+"online"           hash  user_id -> username, exactly the users whose user hash is non-empty;
//	                     listed page by page with HSCAN (List)
//	P+"gateways"         zset  gateway -> liveness expiry (unix ms); a gateway past it is swept
//	P+"seq"              string counter, incremented for every change; initialised to the clock in
//	                     unix microseconds when missing, so it keeps increasing across a Redis
//	                     restart that lost it (as long as fewer than a million changes a second
//	                     were made before the restart, on average, since it was last initialised)
//	P+"resync:"+gateway+":"+resync_id
//	                     hash  staged chunks of one gateway resync (see resyncScript), expiring
//	                     after the staging TTL when the resync never completes
//
// Invariants (kept by every script): a connection is in its gateway's hash iff
// it is in its user's hash; a user is in the online hash iff the user's hash
// exists; seq only increases.
//
// The scripts touch keys they compute from ARGV, which a single Redis server
// (or miniredis) accepts. On Redis Cluster every key must live in one slot:
// use a prefix with a hash tag, such as "{parley:presence}:".
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel errors.
var (
	// ErrBadReply means Redis answered a script with something the store
	// did not expect (a script and its reader disagree: a bug).
	ErrBadReply = errors.New("store: unexpected script reply")
	// ErrBadCursor means a List cursor is not one List returned.
	ErrBadCursor = errors.New("store: malformed list cursor")
)

// Conn is one authenticated client connection on a gateway.
type Conn struct {
	GatewayID string
	ConnID    string
	UserID    string
	Username  string
	SessionID string
}

// Change is a user coming online (first connection) or going offline (last
// connection gone). Seq orders all changes.
type Change struct {
	UserID   string
	Username string
	Online   bool
	Seq      uint64
}

// OnlineUser is one entry of the online list.
type OnlineUser struct {
	UserID   string
	Username string
	Conns    uint32 // live connections
}

// Options configure a Store.
type Options struct {
	Prefix     string           // key prefix; "" means DefaultPrefix
	GatewayTTL time.Duration    // a gateway is swept this long after its last sign of life
	ResyncTTL  time.Duration    // staged resync chunks expire after this
	Clock      func() time.Time // nil means time.Now
}

// DefaultPrefix is the key prefix when Options.Prefix is empty.
const DefaultPrefix = "parley:presence:"

// Store is the presence state in one Redis. It is safe for concurrent use.
type Store struct {
	rdb  redis.UniversalClient
	opts Options
}

var (
	connectLua    = redis.NewScript(connectScript)
	disconnectLua = redis.NewScript(disconnectScript)
	heartbeatLua  = redis.NewScript(heartbeatScript)
	resyncLua     = redis.NewScript(resyncScript)
	sweepLua      = redis.NewScript(sweepScript)
	listLua       = redis.NewScript(listScript)
)

// New returns a Store on rdb. It sends nothing to Redis.
func New(rdb redis.UniversalClient, opts Options) *Store {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.GatewayTTL <= 0 {
		opts.GatewayTTL = 15 * time.Second
	}
	if opts.ResyncTTL <= 0 {
		opts.ResyncTTL = 30 * time.Second
	}
	return &Store{rdb: rdb, opts: opts}
}

// run executes script with the common arguments (prefix, clock in µs)
// followed by args. KEYS[1] is the seq key, so a cluster client routes the
// script to the slot of the (hash-tagged) prefix.
func (s *Store) run(ctx context.Context, script *redis.Script, now time.Time, args ...any) (any, error) {
	all := make([]any, 0, 2+len(args))
	all = append(all, s.opts.Prefix, strconv.FormatInt(now.UnixMicro(), 10))
	all = append(all, args...)
	return script.Run(ctx, s.rdb, []string{s.opts.Prefix + "seq"}, all...).Result()
}

func (s *Store) expiry(now time.Time) string {
	return strconv.FormatInt(now.Add(s.opts.GatewayTTL).UnixMilli(), 10)
}

// member encodes what a gateway hash stores for a connection. JSON arrays
// are decoded by both Redis's and gopher-lua's cjson.
func member(c Conn) (string, error) {
	b, err := json.Marshal([]string{c.UserID, c.SessionID, c.Username})
	return string(b), err
}

// Connect adds c (replacing an earlier connection with the same gateway and
// conn id) and marks its gateway alive. It returns the online change when c
// is the user's first connection.
func (s *Store) Connect(ctx context.Context, c Conn) ([]Change, error) {
	m, err := member(c)
	if err != nil {
		return nil, err
	}
	now := s.opts.Clock()
	res, err := s.run(ctx, connectLua, now, c.GatewayID, c.ConnID, m, s.expiry(now))
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	_, ch, err := parseChanges(res)
	return ch, err
}

// Disconnect removes a connection; unknown ones are ignored. It returns the
// offline change when it was the user's last connection.
func (s *Store) Disconnect(ctx context.Context, gatewayID, connID string) ([]Change, error) {
	res, err := s.run(ctx, disconnectLua, s.opts.Clock(), gatewayID, connID)
	if err != nil {
		return nil, fmt.Errorf("disconnect: %w", err)
	}
	_, ch, err := parseChanges(res)
	return ch, err
}

// Heartbeat marks the gateway alive for another GatewayTTL and returns how
// many of its connections the store holds.
func (s *Store) Heartbeat(ctx context.Context, gatewayID string) (int, error) {
	now := s.opts.Clock()
	res, err := s.run(ctx, heartbeatLua, now, gatewayID, s.expiry(now))
	if err != nil {
		return 0, fmt.Errorf("heartbeat: %w", err)
	}
	n, ok := res.(int64)
	if !ok {
		return 0, fmt.Errorf("heartbeat: %w", ErrBadReply)
	}
	return int(n), nil
}

// Resync is one chunk of a gateway's full connection list.
type Resync struct {
	GatewayID string
	ResyncID  string
	Conns     []Conn // their GatewayID is ignored: they belong to GatewayID
	Last      bool
	Chunks    uint32 // on the last chunk: how many chunks the resync has (0: all others are staged)
}

// Resync stages a chunk and, once the resync is complete, makes the
// gateway's connection set equal to the union of its chunks. applied tells
// whether this call completed it; changes are the users that came online or
// went offline through it.
func (s *Store) Resync(ctx context.Context, r Resync) (applied bool, changes []Change, err error) {
	now := s.opts.Clock()
	last := "0"
	if r.Last {
		last = "1"
	}
	args := make([]any, 0, 6+2*len(r.Conns))
	args = append(args, r.GatewayID, r.ResyncID, last, strconv.FormatUint(uint64(r.Chunks), 10),
		strconv.FormatInt(s.opts.ResyncTTL.Milliseconds(), 10), s.expiry(now))
	for _, c := range r.Conns {
		m, err := member(c)
		if err != nil {
			return false, nil, err
		}
		args = append(args, c.ConnID, m)
	}
	res, err := s.run(ctx, resyncLua, now, args...)
	if err != nil {
		return false, nil, fmt.Errorf("resync: %w", err)
	}
	extra, ch, err := parseChanges(res)
	return extra == 1, ch, err
}

// sweepBatch bounds the gateways one sweep script removes, so one run does
// not hold Redis for long when many gateways died together.
const sweepBatch = 16

// Sweep removes every gateway whose liveness expired, with all its
// connections, and returns how many it removed and the users that went
// offline. Concurrent sweeps by several replicas remove each gateway once.
func (s *Store) Sweep(ctx context.Context) (gateways int, changes []Change, err error) {
	for {
		now := s.opts.Clock()
		res, err := s.run(ctx, sweepLua, now, strconv.FormatInt(now.UnixMilli(), 10), strconv.Itoa(sweepBatch))
		if err != nil {
			return gateways, changes, fmt.Errorf("sweep: %w", err)
		}
		n, ch, err := parseChanges(res)
		if err != nil {
			return gateways, changes, err
		}
		gateways += int(n)
		changes = append(changes, ch...)
		if n < sweepBatch {
			return gateways, changes, nil
		}
	}
}

// Limits of one List page.
const (
	DefaultListLimit = 500  // users per page when the caller gives no limit
	MaxListLimit     = 1000 // larger limits are lowered to this
)

// maxCursorLen bounds a list cursor from a caller: an HSCAN cursor plus
// one user id.
const maxCursorLen = 1024

// Page is one page of the online list.
type Page struct {
	Users []OnlineUser
	Seq   uint64 // the seq of the last change the page reflects, read atomically with it
	Next  string // cursor of the next page; "" when this is the last one
}

// List returns one page of the online list, starting at cursor ("" for the
// first page, else a previous page's Next), with about limit users (0
// means DefaultListLimit; above MaxListLimit means MaxListLimit). A page
// holds at most limit users, except that a page of a large online hash may
// hold a few more (Redis's HSCAN returns whole hash buckets; see
// listScript), and it may hold fewer, even none, while more pages follow.
//
// Walking every page from "" until Next is "" lists every user who was
// online during the whole walk at least once. A user may be listed on two
// pages (Redis may rehash the online hash during the walk), so callers
// de-duplicate by user id; a user who came or went during the walk may or
// may not be listed.
//
// A cursor is the decimal Redis HSCAN cursor of the next step, or
// "0:"+user id when the previous page cut a whole-hash batch after that id
// (see listScript).
func (s *Store) List(ctx context.Context, cursor string, limit int) (Page, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	scan, after, err := parseCursor(cursor)
	if err != nil {
		return Page{}, err
	}
	res, err := s.run(ctx, listLua, s.opts.Clock(), scan, after, strconv.Itoa(limit))
	if err != nil {
		return Page{}, fmt.Errorf("list: %w", err)
	}
	arr, ok := res.([]any)
	if !ok || len(arr) < 3 || len(arr)%3 != 0 {
		return Page{}, fmt.Errorf("list: %w", ErrBadReply)
	}
	seq, err := strconv.ParseUint(fmt.Sprint(arr[0]), 10, 64)
	if err != nil {
		return Page{}, fmt.Errorf("list seq: %w", ErrBadReply)
	}
	nextScan, ok1 := arr[1].(string)
	resume, ok2 := arr[2].(string)
	if !ok1 || !ok2 {
		return Page{}, fmt.Errorf("list cursor: %w", ErrBadReply)
	}
	p := Page{Seq: seq, Users: make([]OnlineUser, 0, len(arr)/3-1)}
	switch {
	case resume != "":
		p.Next = "0:" + resume
	case nextScan != "0":
		p.Next = nextScan
	}
	for i := 3; i < len(arr); i += 3 {
		uid, ok1 := arr[i].(string)
		name, ok2 := arr[i+1].(string)
		n, ok3 := arr[i+2].(int64)
		if !ok1 || !ok2 || !ok3 {
			return Page{}, fmt.Errorf("list: %w", ErrBadReply)
		}
		p.Users = append(p.Users, OnlineUser{UserID: uid, Username: name, Conns: uint32(n)})
	}
	return p, nil
}

// parseCursor splits a List cursor into the HSCAN cursor and the user id to
// resume after ("" for none).
func parseCursor(cursor string) (scan, after string, err error) {
	if cursor == "" {
		return "0", "", nil
	}
	if len(cursor) > maxCursorLen {
		return "", "", ErrBadCursor
	}
	scan, after, cut := strings.Cut(cursor, ":")
	if _, err := strconv.ParseUint(scan, 10, 64); err != nil || (cut && scan != "0") {
		return "", "", ErrBadCursor
	}
	return scan, after, nil
}

// UserSessions returns the user's sessions that have at least one live
// connection, each once.
func (s *Store) UserSessions(ctx context.Context, userID string) ([]string, error) {
	vals, err := s.rdb.HVals(ctx, s.opts.Prefix+"user:"+userID).Result()
	if err != nil {
		return nil, fmt.Errorf("user sessions: %w", err)
	}
	seen := make(map[string]bool, len(vals))
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out, nil
}

// OnlineCount returns how many users are online.
func (s *Store) OnlineCount(ctx context.Context) (int64, error) {
	n, err := s.rdb.HLen(ctx, s.opts.Prefix+"online").Result()
	if err != nil {
		return 0, fmt.Errorf("online count: %w", err)
	}
	return n, nil
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.rdb.Ping(ctx).Err()
}

// parseChanges decodes {extra, user, name, online, seq, ...}.
func parseChanges(res any) (int64, []Change, error) {
	arr, ok := res.([]any)
	if !ok || len(arr) == 0 || (len(arr)-1)%4 != 0 {
		return 0, nil, ErrBadReply
	}
	extra, ok := arr[0].(int64)
	if !ok {
		return 0, nil, ErrBadReply
	}
	var out []Change
	for i := 1; i < len(arr); i += 4 {
		uid, ok1 := arr[i].(string)
		name, ok2 := arr[i+1].(string)
		online, ok3 := arr[i+2].(int64)
		seq, ok4 := arr[i+3].(int64)
		if !ok1 || !ok2 || !ok3 || !ok4 || seq < 0 {
			return 0, nil, ErrBadReply
		}
		out = append(out, Change{UserID: uid, Username: name, Online: online == 1, Seq: uint64(seq)})
	}
	return extra, out, nil
}
