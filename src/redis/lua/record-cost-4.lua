--[[
  Writes a finished job's ledger entry once, however many times its end is reported, adds it to
  its owner's spend, and lets go of the budget it held.
  KEYS[1] ledger  KEYS[2] ledger by time  KEYS[3] user spend  KEYS[4] user holds
  ARGV[1] job id  ARGV[2] entry json  ARGV[3] ended at ms  ARGV[4] UTC day (YYYY-MM-DD)
  ARGV[5] cost  ARGV[6] GPU-hours
  Returns 1 when written now, 0 when it was written before.
]]
redis.call('HDEL', KEYS[4], ARGV[1])
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HINCRBYFLOAT', KEYS[3], 'm:' .. ARGV[4], ARGV[5])
redis.call('HINCRBYFLOAT', KEYS[3], 'g:' .. ARGV[4], ARGV[6])
redis.call('HINCRBYFLOAT', KEYS[3], 'm:total', ARGV[5])
redis.call('HINCRBYFLOAT', KEYS[3], 'g:total', ARGV[6])
return 1
