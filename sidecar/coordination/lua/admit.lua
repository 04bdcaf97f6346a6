-- Admission: one decision, one round trip. Reads the trading state and the fleet's budget
-- fingerprint, then the per-order leases, then every budget the call touches; all or nothing.
--
-- KEYS: state, clock, fleet_fp, then per log: log, meta[, cap], then one key per order lease.
-- ARGV: mode ('admit' | 'peek'), validated_under ('active' | 'reducing'), fingerprint, holder
--       ('' for peek), lease_ttl_ms, deadline_us (0: none), n_logs, n_checks, n_leases,
--       per log: window_us, cost, has_cap (1|0); per check: log index (1-based), cap.
-- Reply (first element says which):
--   {'ok', now, state, epoch}                       admitted (peek: would be); units and leases taken
--   {'throttled', now, check, retry_us (-1: never), cost, cap, used, blocked (1|0)}
--   {'busy', now, lease index...}                   leases (1-based) held by another holder
--   {'halted', now, reason, who, epoch}
--   {'reducing', now, reason, epoch}                reducing, but validated under active
--   {'mismatch', now, fleet_fingerprint}            this instance's budgets differ from the fleet's
--   {'unregistered', now}                           no fleet fingerprint (the instance must say hello)
--   {'expired', now}                                ran after the caller's deadline: nothing taken
-- A call the caller gave up on may still run here later: the deadline refuses it then; if it ran
-- just before, it took units (over-counting is the safe direction) and leases that expire by TTL.
local STATE, CLOCK, FLEET = KEYS[1], KEYS[2], KEYS[3]
local committing = ARGV[1] == 'admit'
local holder = ARGV[4]
local now = clamped_now(CLOCK)

local deadline = tonumber(ARGV[6])
if committing and deadline > 0 and now > deadline then
  return {'expired', now}
end

local st = read_state(STATE)
local state = st[1]
if not state then
  return {'halted', now, MISSING_REASON, '', 0}
end
if state ~= 'active' and state ~= 'reducing' then
  if state ~= 'halted' then
    return {'halted', now, 'unknown trading state ' .. state .. ' (treated as halted)', st[3] or '', num(st[4], 0)}
  end
  return {'halted', now, st[2] or '', st[3] or '', num(st[4], 0)}
end
if state == 'reducing' and ARGV[2] ~= 'reducing' then
  return {'reducing', now, st[2] or '', num(st[4], 0)}
end

-- The budgets must agree across the fleet (after the state: a halt is said as a halt).
local fleet = redis.call('GET', FLEET)
if not fleet then
  return {'unregistered', now}
end
if fleet ~= ARGV[3] then
  return {'mismatch', now, fleet}
end

local n_logs, n_checks, n_leases = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local a, k = 10, 4
local logs = {}
for i = 1, n_logs do
  local L = {window = tonumber(ARGV[a]), cost = tonumber(ARGV[a + 1]), log = KEYS[k], meta = KEYS[k + 1]}
  k = k + 2
  if ARGV[a + 2] == '1' then
    L.cap = num(redis.call('GET', KEYS[k]), nil)
    k = k + 1
  end
  a = a + 3
  logs[i] = L
end

-- Leases first: a busy order must not cost budget.
local busy = {}
for i = 1, n_leases do
  local owner = redis.call('GET', KEYS[k + i - 1])
  if owner and owner ~= holder then
    busy[#busy + 1] = i
  end
end
if #busy > 0 then
  local reply = {'busy', now}
  for _, i in ipairs(busy) do
    reply[#reply + 1] = i
  end
  return reply
end

for i = 1, n_logs do
  local L = logs[i]
  L.used, L.blocked = log_state(L.log, L.meta, L.window, now)
end

-- Decide every check before taking anything (core/ratelimit.py RateLimiter._decide, phase 2).
local worst, worst_ready, worst_cap = nil, now, 0
for i = 1, n_checks do
  local L = logs[tonumber(ARGV[a])]
  local cap = tonumber(ARGV[a + 1])
  a = a + 2
  if L.cap and L.cap < cap then
    cap = L.cap
  end
  if L.used + L.cost > cap or L.blocked > now then
    local ready = ready_at(L.log, L.used, L.blocked, L.cost, cap, L.window, now)
    if ready == nil then
      return {'throttled', now, i, -1, L.cost, cap, L.used, 0}
    end
    if ready > worst_ready then
      worst, worst_ready, worst_cap = i, ready, cap
    end
  end
end
if worst then
  local L = logs[tonumber(ARGV[10 + 3 * n_logs + 2 * (worst - 1)])]
  local blocked = 0
  if L.blocked >= worst_ready then
    blocked = 1
  end
  return {'throttled', now, worst, worst_ready - now, L.cost, worst_cap, L.used, blocked}
end

if committing then
  for i = 1, n_logs do
    local L = logs[i]
    commit(L.log, L.meta, L.cost, L.window, L.blocked, now)
  end
  for i = 1, n_leases do
    redis.call('SET', KEYS[k + i - 1], holder, 'PX', ARGV[5])
  end
end
return {'ok', now, state, num(st[4], 0)}
