--[[
  Writes new jobs' lookup entries: which queue holds each, and the listings of all jobs and of
  their owner's, by creation time. One call instead of a MULTI of three commands per job.
  KEYS[1] job id -> queue (hash)  KEYS[2] all jobs (zset)  KEYS[3] the owner's jobs (zset)
  ARGV[1] now ms  ARGV[2..] pairs of job id, queue
]]
local now = ARGV[1]
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  redis.call('HSET', KEYS[1], id, ARGV[i + 1])
  redis.call('ZADD', KEYS[2], now, id)
  redis.call('ZADD', KEYS[3], now, id)
end
return 1
