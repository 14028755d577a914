-- Now by Redis' clock (ms): reservations compare shadow times by it, so nodes' clocks need not agree.
local function redisNowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
