--[[
  Keeps a user's set of running jobs, and the set of users at their cap, in step.
  KEYS[1] the user's running jobs  KEYS[2] capped users  KEYS[3] the user's limits
  ARGV[1] 'claim' | 'release'  ARGV[2] job id  ARGV[3] user id  ARGV[4] default cap (0: none)
  'claim' refuses (returns -1) when the user is at the cap and the job is not already counted.
  Returns the user's running count after the change, or -1.
]]
local cap = tonumber(redis.call('HGET', KEYS[3], 'max_running_jobs') or ARGV[4]) or 0
if ARGV[1] == 'claim' then
  if redis.call('SISMEMBER', KEYS[1], ARGV[2]) == 0 then
    if cap > 0 and redis.call('SCARD', KEYS[1]) >= cap then return -1 end
    redis.call('SADD', KEYS[1], ARGV[2])
  end
else
  redis.call('SREM', KEYS[1], ARGV[2])
end
local n = redis.call('SCARD', KEYS[1])
if cap > 0 and n >= cap then redis.call('SADD', KEYS[2], ARGV[3]) else redis.call('SREM', KEYS[2], ARGV[3]) end
return n
