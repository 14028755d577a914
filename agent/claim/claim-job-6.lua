--[[
  Claims one named job of a queue if it is still waiting, and locks it exactly as BullMQ's
  moveToActive does, so that BullMQ's lock extension, stalled check and moveToFinished treat it
  as any other active job. Drops this node's reservation for it, if any.

  KEYS[1] wait  KEYS[2] active  KEYS[3] prioritized  KEYS[4] events  KEYS[5] meta  KEYS[6] marker
  ARGV[1] job key prefix  ARGV[2] job id  ARGV[3] lock token  ARGV[4] lock duration ms
  ARGV[5] now ms  ARGV[6] worker name
  Returns {1, job hash (flat)} when claimed, {0} when the job is no longer waiting.
]]
if redis.call('HEXISTS', KEYS[5], 'paused') == 1 then return {0} end
local id = ARGV[2]
local jobKey = ARGV[1] .. id
if redis.call('ZREM', KEYS[3], id) == 0 and redis.call('LREM', KEYS[1], 1, id) == 0 then return {0} end
redis.call('LPUSH', KEYS[2], id)
redis.call('SET', jobKey .. ':lock', ARGV[3], 'PX', ARGV[4])
redis.call('DEL', jobKey .. ':ip-reserved')
redis.call('XADD', KEYS[4], 'MAXLEN', '~', 10000, '*', 'event', 'active', 'jobId', id, 'prev', 'waiting')
redis.call('HSET', jobKey, 'processedOn', ARGV[5], 'pb', ARGV[6])
redis.call('HINCRBY', jobKey, 'ats', 1)
redis.call('ZADD', KEYS[6], 0, '0')
return {1, redis.call('HGETALL', jobKey)}
