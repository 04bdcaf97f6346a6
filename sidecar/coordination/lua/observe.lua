-- Bybit's view of an exchange budget (core/ratelimit.py RateLimiter.observe_exchange_budget and
-- on_exchange_rate_limited, ported). Shared: every instance's acks tighten the same log.
-- KEYS: clock, log, meta, cap.
-- ARGV: kind ('headers' | 'rate_limited'), max (the configured share), window_us, limit,
--       remaining, usable, wait_us (headers: 0 = no future reset; rate_limited: 0 = one window).
-- Reply: {tightened (1|0), now}
local now = clamped_now(KEYS[1])
local log, meta, cap_key = KEYS[2], KEYS[3], KEYS[4]
local max, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local wait = tonumber(ARGV[7])

if ARGV[1] == 'rate_limited' then
  local _, blocked = log_state(log, meta, window, now)
  return {block(meta, blocked, wait, window, now) and 1 or 0, now}
end

local limit, remaining, usable = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local function cap_of(override)
  if override == nil or override >= max then
    return max
  end
  return override
end
local cap_before = cap_of(num(redis.call('GET', cap_key), nil))
local override = nil
if usable < max then
  override = usable
  -- Bybit's limit is the account's tier: remembered for an hour, renewed by every ack.
  redis.call('SET', cap_key, int(usable), 'PX', CLOCK_KEEP_MS)
else
  redis.call('DEL', cap_key)
end
local cap = cap_of(override)
local tightened = cap < cap_before
local used, blocked = log_state(log, meta, window, now)
local local_remaining = math.max(0, cap - used)
local allowed = math.max(0, remaining - (limit - usable))
if allowed < local_remaining then
  -- Units Bybit counts and we did not (another client, or window edges): a phantom entry at now.
  commit(log, meta, local_remaining - allowed, window, blocked, now)
  tightened = true
end
if remaining == 0 and wait > 0 then
  tightened = block(meta, blocked, wait, window, now) or tightened
end
return {tightened and 1 or 0, now}
