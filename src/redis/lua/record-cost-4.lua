--[[
  Writes a ledger entry once, however many times it is reported, and adds it to its owner's
  spend. The entry of a job's end lets go of the budget the job held; the entry of an earlier
  attempt (a retry, a hand-back) takes what it cost off that hold instead, so it is not counted
  both as spent and as held.
  KEYS[1] ledger  KEYS[2] ledger by time  KEYS[3] user spend  KEYS[4] user holds
  ARGV[1] entry id (the job id, or "<job id>:<attempt>")  ARGV[2] entry json  ARGV[3] ended at ms
  ARGV[4] UTC day (YYYY-MM-DD)  ARGV[5] cost  ARGV[6] GPU-hours  ARGV[7] the job id
  Returns 1 when written now, 0 when it was written before.
]]
local written = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1
if ARGV[1] == ARGV[7] then
  redis.call('HDEL', KEYS[4], ARGV[7])
elseif written then
  local held = redis.call('HGET', KEYS[4], ARGV[7])
  if held then
    local m, g = string.match(held, '^([^|]*)|(.*)$')
    local money = math.max(0, (tonumber(m) or 0) - tonumber(ARGV[5]))
    local hours = math.max(0, (tonumber(g) or 0) - tonumber(ARGV[6]))
    redis.call('HSET', KEYS[4], ARGV[7], string.format('%.6f|%.6f', money, hours))
  end
end
if not written then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HINCRBYFLOAT', KEYS[3], 'm:' .. ARGV[4], ARGV[5])
redis.call('HINCRBYFLOAT', KEYS[3], 'g:' .. ARGV[4], ARGV[6])
redis.call('HINCRBYFLOAT', KEYS[3], 'm:total', ARGV[5])
redis.call('HINCRBYFLOAT', KEYS[3], 'g:total', ARGV[6])
return 1
