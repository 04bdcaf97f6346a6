-- Keep the order leases an instance still holds (its heartbeat, once a second): each lease is held
-- again for ttl_ms if it is the holder's, or free (expired while Redis was unreachable, or lost
-- with a restart: the amend is still unsettled, so the order is still busy). A lease another
-- holder has taken meanwhile stays theirs and is reported.
-- KEYS: the lease keys. ARGV: ttl_ms, then one holder per key.
-- Reply: {held, lost index...} (1-based indexes of the leases another holder has).
local held = 0
local reply = {0}
for i = 1, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if not owner or owner == ARGV[i + 1] then
    redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', ARGV[1])
    held = held + 1
  else
    reply[#reply + 1] = i
  end
end
reply[1] = held
return reply
