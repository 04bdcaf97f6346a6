-- Release order leases, but only those the caller holds (another request's lease stays).
-- KEYS: the lease keys. ARGV: holder. Reply: how many were released.
local released = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    released = released + 1
  end
end
return released
