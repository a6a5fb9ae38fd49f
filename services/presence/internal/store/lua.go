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

// listScript returns one page of the online list: {seq, next_hscan_cursor,
// resume_after, user_id, username, connections, ...}. ARGV[3] is the HSCAN
// cursor (decimal), [4] the user id the page resumes after (” for none;
// only with cursor '0', see below), [5] the limit.
//
// One HSCAN step per run keeps the time Redis is held bounded by the page,
// not the list. seq is read in the same run, so the page reflects exactly
// the changes up to seq (returned as a string: a bulk reply from GET).
//
// COUNT is a hint, and HSCAN answers in two ways:
//
//   - A step of a large hash (a hashtable) returns whole buckets until it
//     has at least COUNT entries, and the next cursor. The batch is returned
//     as it is, so the page may hold a few entries more than the limit:
//     cutting it would need a later run to repeat the step, and a repeated
//     step may cover other buckets once the hash changed (entries moved,
//     the table resized), losing entries. Following the cursors keeps
//     HSCAN's own guarantee: an entry present during the whole walk is
//     returned at least once (maybe twice, when the table resized).
//   - The whole hash in one step (next cursor 0 after cursor 0): a small
//     hash is stored compactly (listpack) and returned whole whatever COUNT
//     says, and miniredis always returns the whole hash. That batch is cut
//     at the limit: the limit smallest ids (in the order of 'before') after
//     resume_after are returned, with resume_after = the largest of them
//     and the next cursor '0', and the next run repeats the step and
//     returns the ids after it. An entry present during the whole walk is
//     in every run's batch, so it is returned by the run whose id range
//     holds it. If the hash has meanwhile grown out of the compact
//     encoding, the run gets a partial batch instead; the walk then
//     restarts from the beginning, unfiltered, as a walk of a large hash
//     (entries already returned come again: consumers de-duplicate).
//
// The reply's resume_after is ” unless the batch was cut; with next
// cursor '0' and no resume_after the walk is complete.
const listScript = prelude + `
-- before is a strict total order on strings. Lua's '<' on strings is
-- strcoll in Redis (the server's LC_COLLATE locale, which may call distinct
-- strings equal) and a byte comparison in miniredis; where '<' cannot tell
-- two strings apart their bytes decide.
local function before(a, b)
  if a < b then return true end
  if b < a or a == b then return false end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

if redis.call('EXISTS', K_SEQ) == 0 then
  redis.call('SET', K_SEQ, NOWUS)
end
local cursor, after, limit = ARGV[3], ARGV[4], tonumber(ARGV[5])
local scan = redis.call('HSCAN', K_ONLINE, cursor, 'COUNT', ARGV[5])
local nextc, flat = scan[1], scan[2]
local out = {redis.call('GET', K_SEQ), nextc, ''}
local function emit(u, name)
  local n = #out
  out[n + 1] = u
  out[n + 2] = name
  out[n + 3] = redis.call('HLEN', kuser(u))
end

if not (cursor == '0' and nextc == '0') then
  -- A step of a large hash: the batch as it is.
  for i = 1, #flat, 2 do emit(flat[i], flat[i + 1]) end
  return out
end

-- The whole hash: the limit smallest ids after 'after', kept in a
-- max-heap (ids[1] is the largest kept), so cutting a batch of n costs
-- about n comparisons when it comes sorted (miniredis) and n*log(limit) at
-- worst, not a sort.
local ids, names, seen = {}, {}, 0
local function swap(i, j) ids[i], ids[j] = ids[j], ids[i] end
local function up(i)
  while i > 1 do
    local p = math.floor(i / 2)
    if not before(ids[p], ids[i]) then return end
    swap(p, i)
    i = p
  end
end
local function down(i)
  local n = #ids
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= n and before(ids[m], ids[l]) then m = l end
    if r <= n and before(ids[m], ids[r]) then m = r end
    if m == i then return end
    swap(m, i)
    i = m
  end
end
for i = 1, #flat, 2 do
  local f = flat[i]
  if after == '' or before(after, f) then
    seen = seen + 1
    if #ids < limit then
      ids[#ids + 1] = f
      names[f] = flat[i + 1]
      up(#ids)
    elseif before(f, ids[1]) then
      names[ids[1]] = nil
      ids[1] = f
      names[f] = flat[i + 1]
      down(1)
    end
  end
end
if seen > limit then out[3] = ids[1] end
for _, u in ipairs(ids) do emit(u, names[u]) end
return out
`
