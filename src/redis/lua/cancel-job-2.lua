--[[
  Marks a job cancelled. A queued job ends now; a job a node holds ends when its agent
  confirms the container stopped (its 'cancelled' report sets finished_at).
  KEYS[1] job record  KEYS[2] job log stream
  ARGV[1] now ms  ARGV[2] retention seconds  ARGV[3] log cap (lines)
  Returns {'ok', previous status, node id or ''} or {'err', code, current status}.
]]
-- @include job-status
if redis.call('EXISTS', KEYS[1]) == 0 then return {'err', 'not_found', ''} end
local cur = redis.call('HMGET', KEYS[1], 'status', 'node_id')
if FINAL[cur[1]] then return {'err', 'conflict', cur[1]} end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'status_reason', 'cancelled_by_user',
  'cancel_requested_at', ARGV[1], 'updated_at', ARGV[1])
if cur[1] == 'queued' then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  endLog(KEYS[2], 'cancelled', ARGV[1], ARGV[3], ARGV[2])
end
return {'ok', cur[1], cur[2] or ''}
