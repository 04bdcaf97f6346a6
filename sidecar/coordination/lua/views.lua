-- Budgets as getSafetyPolicy shows them. Consumes nothing (it prunes, as the core limiter does).
-- KEYS: clock, then per log: log, meta[, cap]. ARGV: n, then per log: window_us, cap, has_cap.
-- Reply: {now, then per log: cap in force, used, ready_us (-1: never)}
local now = clamped_now(KEYS[1])
local reply = {now}
local k, a = 2, 2
for _ = 1, tonumber(ARGV[1]) do
  local window, cap = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local log, meta = KEYS[k], KEYS[k + 1]
  k = k + 2
  if ARGV[a + 2] == '1' then
    local override = num(redis.call('GET', KEYS[k]), nil)
    if override and override < cap then
      cap = override
    end
    k = k + 1
  end
  a = a + 3
  local used, blocked = log_state(log, meta, window, now)
  local ready = ready_at(log, used, blocked, 1, cap, window, now)
  reply[#reply + 1] = cap
  reply[#reply + 1] = used
  reply[#reply + 1] = ready or -1
end
return reply
