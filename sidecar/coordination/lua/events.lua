-- Account-level trip counters: record `add` events now and count those of the last window.
-- KEYS: clock, log, meta. ARGV: window_us, add. Reply: {count, now}
local now = clamped_now(KEYS[1])
local window, add = tonumber(ARGV[1]), tonumber(ARGV[2])
local used, blocked = log_state(KEYS[2], KEYS[3], window, now)
if add > 0 then
  commit(KEYS[2], KEYS[3], add, window, blocked, now)
  used = used + add
end
return {used, now}
