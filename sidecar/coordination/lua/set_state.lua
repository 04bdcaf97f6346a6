-- Set the trading state (an operator's halt/resume, or an automatic trip) and publish it.
-- KEYS: state, then the trip counters' keys (cleared by an operator's resume: 'set' to active, so a
-- trip counts what happens after it). ARGV: state, reason, who, gen_token, channel, mode ('set' | 'escalate').
-- 'escalate' only ever makes it stricter (active < reducing < halted; a missing state is halted),
-- so concurrent trips from several instances can never loosen one another.
-- Reply: {changed (1|0), state, reason, who, epoch, ts_ms, gen}
local now = clock()
local st = read_state(KEYS[1])
if ARGV[6] == 'escalate' then
  local current = SEVERITY[st[1] or 'halted'] or SEVERITY.halted
  if SEVERITY[ARGV[1]] <= current then
    local reply = {0}
    for _, v in ipairs(state_reply(st)) do
      reply[#reply + 1] = v
    end
    if not st[1] then
      reply[2], reply[3] = 'halted', MISSING_REASON
    end
    return reply
  end
end
if ARGV[6] == 'set' and ARGV[1] == 'active' then
  for i = 2, #KEYS do
    redis.call('DEL', KEYS[i])
  end
end
local written = write_state(KEYS[1], ARGV[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4], now)
local reply = {1}
for _, v in ipairs(written) do
  reply[#reply + 1] = v
end
return reply
