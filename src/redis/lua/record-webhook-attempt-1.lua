--[[
  Records one webhook delivery attempt on a job's record, only while the record exists (so a
  record that expired is not brought back without its expiry). A delivered webhook stays so.
  KEYS[1] job record
  ARGV[1] the attempt (json: at, status_code, error, duration_ms)  ARGV[2] webhook status after it
  Returns the attempt's number, or 0 when the record is gone.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[1], 'webhook_attempts', 1)
redis.call('HSET', KEYS[1], 'webhook_attempt:' .. n, ARGV[1])
if redis.call('HGET', KEYS[1], 'webhook_status') ~= 'delivered' then
  redis.call('HSET', KEYS[1], 'webhook_status', ARGV[2])
end
return n
