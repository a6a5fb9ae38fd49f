package store

// The Lua scripts below are the only code that changes presence state. Each
// runs atomically in Redis, so any number of presence replicas may run them
// concurrently: a state change (a user's first connection added, last one
// removed) happens inside exactly one script run, and only the replica that
// ran it learns of the change and publishes it.
//
// The scripts keep to Redis 7 Lua and to what miniredis (gopher-lua) runs:
// redis.call with string arguments, cjson, string/table functions. Numbers
// that reach Redis as arguments (scores, the initial seq) are passed in ARGV
// as decimal strings rather than computed in Lua, because Lua numbers are
// doubles.
//
// Every script gets ARGV[1] = key prefix and ARGV[2] = the clock in unix
// microseconds (for initialising seq); its own arguments start at ARGV[3].
// Scripts that change state return {extra, user_id, username, online(0|1),
// seq, user_id, ...}: a script-specific integer followed by the changes in the
// order they happened.

// prelude defines the helpers every state-changing script uses.
const prelude = `
local P = ARGV[1]
local NOWUS = ARGV[2]
local K_SEQ = P .. 'seq'
local K_ONLINE = P .. 'online'
local K_GWS = P .. 'gateways'
local function kgw(g) return P .. 'gw:' .. g end
local function kuser(u) return P .. 'user:' .. u end
-- connkey names one connection inside a user's hash; the length prefix keeps
-- (gateway, conn) pairs distinct whatever characters the ids hold.
local function connkey(g, c) return string.len(g) .. ':' .. g .. c end

local changes = {0}

local function nextseq()
  if redis.call('EXISTS', K_SEQ) == 0 then
    redis.call('SET', K_SEQ, NOWUS)
  end
  return redis.call('INCR', K_SEQ)
end

local function emit(u, name, online)
  local n = #changes
  changes[n + 1] = u
  changes[n + 2] = name
  changes[n + 3] = online
  changes[n + 4] = nextseq()
end

-- remove drops connection c of gateway g (whose stored member is member);
-- when it was the user's last connection the user goes offline.
local function remove(g, c, member)
  redis.call('HDEL', kgw(g), c)
  local m = cjson.decode(member)
  local uk = kuser(m[1])
  if redis.call('HDEL', uk, connkey(g, c)) == 1 and redis.call('EXISTS', uk) == 0 then
    local name = redis.call('HGET', K_ONLINE, m[1])
    if not name then name = m[3] end
    redis.call('HDEL', K_ONLINE, m[1])
    emit(m[1], name, 0)
  end
end

-- add stores connection c of gateway g with member (["user","session",
-- "username"]); when it is the user's first connection the user comes online.
-- Re-adding the same member changes nothing; a member of another user
-- replaces the old one as a remove followed by an add.
local function add(g, c, member)
  local gk = kgw(g)
  local old = redis.call('HGET', gk, c)
  if old == member then return end
  local m = cjson.decode(member)
  if old then
    local o = cjson.decode(old)
    if o[1] ~= m[1] then remove(g, c, old) end
  end
  redis.call('HSET', gk, c, member)
  local uk = kuser(m[1])
  local fresh = redis.call('HSET', uk, connkey(g, c), m[2]) == 1
  redis.call('HSET', K_ONLINE, m[1], m[3])
  if fresh and redis.call('HLEN', uk) == 1 then
    emit(m[1], m[3], 1)
  end
end

-- touch moves gateway g's liveness expiry (unix ms, a decimal string) to exp
-- unless it is already later.
local function touch(g, exp)
  local s = redis.call('ZSCORE', K_GWS, g)
  if (not s) or tonumber(s) < tonumber(exp) then
    redis.call('ZADD', K_GWS, exp, g)
  end
end
`

// connectScript: ARGV[3] gateway, [4] conn id, [5] member, [6] expiry ms.
// A connection proves its gateway alive, so the gateway's expiry moves too.
const connectScript = prelude + `
touch(ARGV[3], ARGV[6])
add(ARGV[3], ARGV[4], ARGV[5])
return changes
`

// disconnectScript: ARGV[3] gateway, [4] conn id. Unknown connections are
// ignored (a disconnect may be retried, or follow a sweep).
const disconnectScript = prelude + `
local old = redis.call('HGET', kgw(ARGV[3]), ARGV[4])
if old then remove(ARGV[3], ARGV[4], old) end
return changes
`

// heartbeatScript: ARGV[3] gateway, [4] expiry ms. Returns how many
// connections presence holds for the gateway.
const heartbeatScript = prelude + `
touch(ARGV[3], ARGV[4])
return redis.call('HLEN', kgw(ARGV[3]))
`

// resyncScript stages one chunk of a gateway resync and applies the resync
// once every chunk is staged. ARGV[3] gateway, [4] staging key suffix
// (resync id), [5] "1" on the last chunk, [6] chunk count from the last
// chunk ("0": all earlier chunks are staged already), [7] staging TTL ms,
// [8] gateway expiry ms, then conn id / member pairs.
//
// The staging hash holds "c:"+conn -> member for staged connections, "k:"+the
// chunk's first conn id for each chunk seen (so a chunk retried after a lost
// reply is counted once: conn ids are unique across one resync's chunks),
// "#got" the number of distinct chunks and "#want" the chunk count once the
// last chunk has arrived. Whichever replica stages the final missing chunk
// applies the resync: the gateway's set becomes exactly the staged set.
// Additions run before removals, so a user whose connection was merely
// replaced does not flap offline and back.
//
// extra in the reply: 1 when this call applied the resync, else 0.
const resyncScript = prelude + `
local g = ARGV[3]
local sk = P .. 'resync:' .. g .. ':' .. ARGV[4]
local first = ''
if #ARGV >= 9 then first = ARGV[9] end
for i = 9, #ARGV, 2 do
  redis.call('HSET', sk, 'c:' .. ARGV[i], ARGV[i + 1])
end
if redis.call('HSETNX', sk, 'k:' .. first, '1') == 1 then
  redis.call('HINCRBY', sk, '#got', 1)
end
if ARGV[5] == '1' then
  redis.call('HSET', sk, '#want', ARGV[6])
end
redis.call('PEXPIRE', sk, ARGV[7])
local want = redis.call('HGET', sk, '#want')
if not want then return changes end
want = tonumber(want)
local got = tonumber(redis.call('HGET', sk, '#got'))
if want > 0 and got < want then return changes end

-- staged: conn -> member for the removal pass; adds follow the staging
-- hash's order rather than Lua's table order, so replies are deterministic.
local staged = {}
local flat = redis.call('HGETALL', sk)
local current = redis.call('HGETALL', kgw(g))
for i = 1, #flat, 2 do
  local f = flat[i]
  if string.sub(f, 1, 2) == 'c:' then
    local c = string.sub(f, 3)
    staged[c] = flat[i + 1]
    add(g, c, flat[i + 1])
  end
end
for i = 1, #current, 2 do
  if not staged[current[i]] then
    remove(g, current[i], current[i + 1])
  end
end
touch(g, ARGV[8])
redis.call('DEL', sk)
changes[1] = 1
return changes
`

// sweepScript removes up to ARGV[4] gateways whose expiry is at or before
// ARGV[3] (unix ms) with all their connections. ZREM inside the same atomic
// run means a gateway is swept by exactly one replica.
//
// extra in the reply: the number of gateways swept.
const sweepScript = prelude + `
local gws = redis.call('ZRANGEBYSCORE', K_GWS, '-inf', ARGV[3], 'LIMIT', '0', ARGV[4])
for _, g in ipairs(gws) do
  redis.call('ZREM', K_GWS, g)
  local current = redis.call('HGETALL', kgw(g))
  for i = 1, #current, 2 do
    remove(g, current[i], current[i + 1])
  end
  redis.call('DEL', kgw(g))
end
changes[1] = #gws
return changes
`

// listScript returns {seq, user_id, username, connections, ...}: the online
// list and the seq of the last change it includes, read atomically, so a
// gateway can apply exactly the events with a higher seq on top of it. seq
// is returned as a string (it is a bulk reply from GET).
const listScript = prelude + `
if redis.call('EXISTS', K_SEQ) == 0 then
  redis.call('SET', K_SEQ, NOWUS)
end
local out = {redis.call('GET', K_SEQ)}
local online = redis.call('HGETALL', K_ONLINE)
for i = 1, #online, 2 do
  local n = #out
  out[n + 1] = online[i]
  out[n + 2] = online[i + 1]
  out[n + 3] = redis.call('HLEN', kuser(online[i]))
end
return out
`
