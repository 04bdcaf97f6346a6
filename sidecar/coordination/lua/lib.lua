-- Shared by every coordination script (prepended after the clock). Times are integer
-- microseconds; Lua numbers are doubles, exact for integers below 2^53 (year 2255 in µs).
-- Every number written to Redis goes through int(): tostring() would turn 1.7e15 into '1.7e+15'.

local MISSING_REASON = 'the coordination state is missing (Redis lost it or was never initialised): ' ..
  'trading stays halted until an operator resumes'
local SLACK_MS = 10000       -- logs and blocks outlive their last counting instant by this much
local CLOCK_KEEP_MS = 3600000
local MAX_BLOCK_US = 60000000 -- a block is never longer than 60 s (core ratelimit MAX_BLOCK_NS)
local SEVERITY = {active = 0, reducing = 1, halted = 2}

local function int(n)
  return string.format('%d', n)
end

local function num(v, default)
  if not v then
    return default
  end
  return tonumber(v)
end

-- Redis's clock, never earlier than the latest time a script of this namespace saw: a clock step
-- back cannot reorder a log (core/ratelimit.py clamps its monotonic clock the same way).
local function clamped_now(clock_key)
  local now = clock()
  local last = num(redis.call('GET', clock_key), 0)
  if now < last then
    return last
  end
  redis.call('SET', clock_key, int(now), 'PX', CLOCK_KEEP_MS)
  return now
end

-- Extend a key's time to live to at least `ms` (never shorten it).
local function keep(key, ms)
  if redis.call('PTTL', key) < ms then
    redis.call('PEXPIRE', key, ms)
  end
end

local function keep_ms(window, blocked, now)
  local until_us = now + window
  if blocked > until_us then
    until_us = blocked
  end
  return math.ceil((until_us - now) / 1000) + SLACK_MS
end

-- A sliding log: LIST `log` of (time, units) pairs, oldest first, equal times merged; HASH `meta`
-- with `used` (the sum of the units) and `blocked` (nothing is admitted before it). An entry
-- counts while its time > now - window. Prunes, and returns (used, blocked).
local function log_state(log, meta, window, now)
  local m = redis.call('HMGET', meta, 'used', 'blocked')
  local used = num(m[1], nil)
  local blocked = num(m[2], 0)
  local recounted = false
  if used == nil then
    -- No meta (a fresh log, or meta lost): recount, so the log is never under-counted.
    used = 0
    local entries = redis.call('LRANGE', log, 0, -1)
    for i = 2, #entries, 2 do
      used = used + tonumber(entries[i])
    end
    recounted = #entries > 0
  end
  local cutoff = now - window
  local changed = false
  while true do
    local t = redis.call('LINDEX', log, 0)
    if not t then
      if used ~= 0 then
        used = 0
        changed = true
      end
      break
    end
    if tonumber(t) > cutoff then
      break
    end
    local pair = redis.call('LPOP', log, 2)
    used = used - tonumber(pair[2])
    changed = true
  end
  if changed or recounted then
    redis.call('HSET', meta, 'used', int(used))
    keep(meta, keep_ms(window, blocked, now))
  end
  return used, blocked
end

-- The earliest time >= now at which `cost` more units fit under `cap` (nil: never).
local function ready_at(log, used, blocked, cost, cap, window, now)
  if cost > cap then
    return nil
  end
  local ready = now
  local need = used + cost - cap
  if need > 0 then
    local entries = redis.call('LRANGE', log, 0, -1)
    local acc = 0
    for i = 1, #entries, 2 do
      acc = acc + tonumber(entries[i + 1])
      if acc >= need then
        ready = tonumber(entries[i]) + window
        break
      end
    end
  end
  if blocked > ready then
    return blocked
  end
  return ready
end

local function commit(log, meta, cost, window, blocked, now)
  local last = redis.call('LINDEX', log, -2)
  if last and tonumber(last) == now then
    redis.call('LSET', log, -1, int(tonumber(redis.call('LINDEX', log, -1)) + cost))
  else
    redis.call('RPUSH', log, int(now), int(cost))
  end
  redis.call('HINCRBY', meta, 'used', cost)
  local ms = keep_ms(window, blocked, now)
  keep(log, ms)
  keep(meta, ms)
end

-- Block a log until now + wait (one window if wait <= 0), at most MAX_BLOCK_US; blocks only grow.
local function block(meta, blocked, wait, window, now)
  if wait <= 0 then
    wait = window
  end
  if wait > MAX_BLOCK_US then
    wait = MAX_BLOCK_US
  end
  local until_us = now + wait
  if until_us > blocked then
    redis.call('HSET', meta, 'blocked', int(until_us))
    keep(meta, keep_ms(window, until_us, now))
    return true
  end
  return false
end

-- The control state: HASH `state` with state, reason, who, epoch, ts_ms, gen (no TTL: losing it
-- means halted). Returns the fields as a list (state is false when the hash is missing).
local function read_state(key)
  return redis.call('HMGET', key, 'state', 'reason', 'who', 'epoch', 'ts_ms', 'gen')
end

-- Write a new state (epoch + 1) and publish it. `gen` names the life of this hash: it is set when
-- the hash is created, so ids and epochs from before a loss are never confused with later ones.
local function write_state(key, channel, state, reason, who, gen_token, now)
  local gen = redis.call('HGET', key, 'gen')
  if not gen then
    gen = gen_token
  end
  local epoch = redis.call('HINCRBY', key, 'epoch', 1)
  local ts_ms = math.floor(now / 1000)
  redis.call('HSET', key, 'state', state, 'reason', reason, 'who', who, 'ts_ms', int(ts_ms), 'gen', gen)
  redis.call('PUBLISH', channel, cjson.encode({
    state = state, reason = reason, who = who, epoch = epoch, tsMs = ts_ms, gen = gen,
  }))
  return {state, reason, who, epoch, ts_ms, gen}
end

local function state_reply(st)
  return {st[1], st[2] or '', st[3] or '', num(st[4], 0), num(st[5], 0), st[6] or ''}
end
