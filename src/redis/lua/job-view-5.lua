--[[
  Reads a job's record together with the BullMQ facts that can overrule it: an agent that died
  leaves the record 'running' but its lock gone, and BullMQ puts the job back or fails it.
  KEYS[1] job record  KEYS[2] BullMQ job hash  KEYS[3] BullMQ lock
  KEYS[4] BullMQ failed zset  KEYS[5] BullMQ completed zset
  ARGV[1] job id
  Returns {record fields (flat), bull job exists, lock held, in failed, in completed, failedReason}.
]]
local rec = redis.call('HGETALL', KEYS[1])
if #rec == 0 then return {rec, 0, 0, 0, 0, ''} end
local function inZset(key) if redis.call('ZSCORE', key, ARGV[1]) then return 1 end return 0 end
return {
  rec,
  redis.call('EXISTS', KEYS[2]),
  redis.call('EXISTS', KEYS[3]),
  inZset(KEYS[4]),
  inZset(KEYS[5]),
  redis.call('HGET', KEYS[2], 'failedReason') or '',
}
