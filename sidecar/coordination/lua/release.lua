-- Release order leases, but only those the caller holds (another request's lease stays); or,
-- with a new holder, hand them over (core/inflight.py Rule 3: unverified -> re-read).
-- KEYS: the lease keys. ARGV: holder, new_holder ('' = release), ttl_ms (for a new holder).
-- Reply: how many leases the caller held (and released or handed over).
local count = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    if ARGV[2] == '' then
      redis.call('DEL', KEYS[i])
    else
      redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[3])
    end
    count = count + 1
  end
end
return count
