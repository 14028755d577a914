--[[
  Marks a job cancelled. A queued job ends now; a job a node holds ends when its agent
  confirms the container stopped (its 'cancelled' report sets finished_at).
  KEYS[1] job record  KEYS[2] job log stream
  KEYS[3] the tier's job events  KEYS[4] the tier's pending counters  KEYS[5] this hour's timeline
  KEYS[6] the tier's ended-with-webhook stream
  ARGV[1] now ms  ARGV[2] retention seconds  ARGV[3] log cap (lines)
  Returns {'ok', previous status, node id or ''} or {'err', code, current status}.
]]
-- @include job-status
-- @include job-event
if redis.call('EXISTS', KEYS[1]) == 0 then return {'err', 'not_found', ''} end
local cur = redis.call('HMGET', KEYS[1], 'status', 'node_id')
if FINAL[cur[1]] then return {'err', 'conflict', cur[1]} end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'status_reason', 'cancelled_by_user',
  'cancel_requested_at', ARGV[1], 'updated_at', ARGV[1])
local final = '0'
if cur[1] == 'queued' then
  final = '1'
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  endLog(KEYS[2], 'cancelled', ARGV[1], ARGV[3], ARGV[2])
end
jobEvent({KEYS[3], KEYS[4], KEYS[5], KEYS[6]}, KEYS[1], cur[1], 'cancelled', ARGV[1], final)
return {'ok', cur[1], cur[2] or ''}
