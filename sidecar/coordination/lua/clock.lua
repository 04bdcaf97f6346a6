-- The clock of every coordination script: Redis's own, in integer microseconds. One clock for
-- the whole fleet, whatever the hosts' clocks say. (Tests swap this one function, and only it,
-- for a clock they set; see sidecar/coordination/scripts.py.)
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
