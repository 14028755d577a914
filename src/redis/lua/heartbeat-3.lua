--[[
  Records a heartbeat: writes the live hash with its TTL (the node's liveness) and keeps the
  node's entries in the fit index in step with what it reported.
  KEYS[1] node record  KEYS[2] live hash  KEYS[3] node's pending cancels set
  ARGV[1] node id  ARGV[2] now ms  ARGV[3] ttl ms  ARGV[4] live fields json
  ARGV[5] desired fit entries json ([[key, score], ...]; [] when the node cannot take jobs)
  Returns {'unknown'} or {'ok', admin state, cancelled job ids...}.
]]
-- @include hash
-- @include fit-index
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unknown'} end
local existed = redis.call('EXISTS', KEYS[2]) == 1
hsetFromJson(KEYS[2], ARGV[4])
redis.call('HSET', KEYS[2], 'idx_desired', ARGV[5], 'last_heartbeat', ARGV[2])
if not existed then redis.call('HSET', KEYS[2], 'up_since', ARGV[2]) end
redis.call('PEXPIRE', KEYS[2], ARGV[3])

local rec = redis.call('HMGET', KEYS[1], 'admin_state', 'idx')
redis.call('HSET', KEYS[1], 'last_heartbeat', ARGV[2])
local desired = '[]'
if rec[1] == 'active' then desired = ARGV[5] end
local applied = rec[2] or '[]'
if (not existed) or desired ~= applied then
  applyFitIndex(ARGV[1], applied, desired, existed)
  redis.call('HSET', KEYS[1], 'idx', desired)
end
local out = {'ok', rec[1]}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do out[#out + 1] = id end
return out
