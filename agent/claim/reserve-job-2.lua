--[[
  Holds, renews or takes over the reservation for a starving job: the node that holds it stops
  taking jobs that would use the devices the job needs (except jobs that end before it could
  start), so they drain for it. One node at a time: the one that could start it soonest. A node
  takes the reservation over when its shadow time (the latest the job could start there) is
  earlier than the holder's by more than a tenth of the holder's remaining wait, so two nodes do
  not trade it back and forth. The reservation lapses if its holder stops renewing it (it died).
  Shadow times are kept by Redis' clock: a node says how long until its own, so the nodes'
  clocks need not agree.
  KEYS[1] the job's reservation key ("<job key>:ip-reserved", value "node|shadow ms")
  KEYS[2] the BullMQ job's key
  ARGV[1] node name  ARGV[2] ttl ms  ARGV[3] ms until this node's shadow time
  Returns 1 when this node holds it now, 0 when another node does, -1 when the job no longer
  waits (another node took it, or it ended): then there is nothing to hold.
]]
if redis.call('EXISTS', KEYS[2]) == 0 or redis.call('EXISTS', KEYS[2] .. ':lock') == 1
  or redis.call('HEXISTS', KEYS[2], 'finishedOn') == 1 then
  redis.call('DEL', KEYS[1])
  return -1
end
-- @include redis-now
local now = redisNowMs()
local mine = now + math.max(0, math.floor(tonumber(ARGV[3])))
local current = redis.call('GET', KEYS[1])
if current then
  local by, shadow = string.match(current, '^(.*)|(%d+)$')
  if not by then by = current end
  if by ~= ARGV[1] then
    shadow = tonumber(shadow)
    if not shadow or mine >= shadow - (shadow - now) / 10 then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. string.format('%d', mine), 'PX', ARGV[2])
return 1
