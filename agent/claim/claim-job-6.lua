--[[
  Claims one named job of a queue if it is still waiting, and locks it exactly as BullMQ's
  moveToActive does, so that BullMQ's lock extension, stalled check and moveToFinished treat it
  as any other active job. Drops this node's reservation for it, if any.

  KEYS[1] wait  KEYS[2] active  KEYS[3] prioritized  KEYS[4] events  KEYS[5] meta  KEYS[6] marker
  ARGV[1] job key prefix  ARGV[2] job id  ARGV[3] lock token  ARGV[4] lock duration ms
  ARGV[5] now ms  ARGV[6] worker name
  Returns {1, job hash (flat)} when claimed, {0} when the job is no longer waiting.
]]
-- @include lock-active
if redis.call('HEXISTS', KEYS[5], 'paused') == 1 then return {0} end
local id = ARGV[2]
if redis.call('ZREM', KEYS[3], id) == 0 and redis.call('LREM', KEYS[1], 1, id) == 0 then return {0} end
return {1, lockActive(ARGV[1] .. id, id, KEYS[2], KEYS[4], KEYS[6], ARGV[3], ARGV[4], ARGV[5], ARGV[6])}
