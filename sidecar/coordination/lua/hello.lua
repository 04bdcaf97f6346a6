-- An instance says hello (at start, on reconnect, and once a second): it learns the trading state
-- and its fleet-unique id, and announces the fingerprint of its budgets.
--
-- Lost control state means halted. A missing state hash is created `active` only when the caller
-- may initialise (the first start of a namespace it has never seen); otherwise `halted`, by the
-- first instance that notices, so a brand-new instance arriving later does not resume trading.
-- A state older than the caller has seen (same gen, lower epoch: Redis came back without its
-- latest writes) is likewise replaced by `halted`; so is a state another life of the hash (a
-- different gen) that nobody has decided on yet: created `active` by an instance that did not know
-- the namespace, after the state the caller knew was lost (an operator's word, epoch > 1, stands).
--
-- KEYS: state, fleet (hash instance -> 'fingerprint expiry_us'), fleet_fp.
-- ARGV: instance ('' = allocate one), fingerprint, may_init (1|0), gen_token, who, alive_us,
--       channel, seen_gen, seen_epoch.
-- Reply: {instance, state, reason, who, epoch, ts_ms, gen, fleet_fp, event, now}; event is
--        '' | 'initialised' | 'lost' | 'rolled_back'.
local STATE, FLEET, FLEET_FP = KEYS[1], KEYS[2], KEYS[3]
local now = clock()
local st = read_state(STATE)
local event = ''
if not st[1] then
  if ARGV[3] == '1' then
    write_state(STATE, ARGV[7], 'active', '', ARGV[5], ARGV[4], now)
    redis.call('HSET', STATE, 'init', '1')
    event = 'initialised'
  else
    write_state(STATE, ARGV[7], 'halted', MISSING_REASON, 'sidecar', ARGV[4], now)
    event = 'lost'
  end
  st = read_state(STATE)
elseif st[6] == ARGV[8] and num(st[4], 0) < tonumber(ARGV[9]) then
  redis.call('HSET', STATE, 'epoch', ARGV[9])
  write_state(STATE, ARGV[7], 'halted',
    'the coordination state went back to an older version (Redis lost recent writes): ' ..
    'trading stays halted until an operator resumes', 'sidecar', ARGV[4], now)
  event = 'rolled_back'
  st = read_state(STATE)
elseif ARGV[8] ~= '' and st[6] ~= ARGV[8] and num(st[4], 0) == 1
    and redis.call('HGET', STATE, 'init') == '1' then
  write_state(STATE, ARGV[7], 'halted',
    'the coordination state was lost and re-created by a sidecar that did not know it: ' ..
    'trading stays halted until an operator resumes', 'sidecar', ARGV[4], now)
  event = 'lost'
  st = read_state(STATE)
end

local instance = ARGV[1]
if instance == '' then
  instance = (st[6] or 'g') .. '.' .. int(redis.call('HINCRBY', STATE, 'instances', 1))
end

-- The fleet: every live instance's fingerprint; the common one, or '' when they differ.
redis.call('HSET', FLEET, instance, ARGV[2] .. ' ' .. int(now + tonumber(ARGV[6])))
local common = nil
local mixed = false
local entries = redis.call('HGETALL', FLEET)
for i = 1, #entries, 2 do
  local fp, expiry = string.match(entries[i + 1], '^(%S+) (%d+)$')
  if not fp or tonumber(expiry) < now then
    redis.call('HDEL', FLEET, entries[i])
  elseif common == nil then
    common = fp
  elseif common ~= fp then
    mixed = true
  end
end
if mixed then
  common = ''
end
local fleet_keep_ms = math.ceil(tonumber(ARGV[6]) / 1000) * 12
redis.call('PEXPIRE', FLEET, fleet_keep_ms)
redis.call('SET', FLEET_FP, common, 'PX', fleet_keep_ms)

local reply = {instance}
for _, v in ipairs(state_reply(st)) do
  reply[#reply + 1] = v
end
reply[#reply + 1] = common
reply[#reply + 1] = event
reply[#reply + 1] = now
return reply
