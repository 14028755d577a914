--[[
  Ends a job that no agent can end any more (src/services/job-reaper.ts), the way a final report
  would: the final status written once, its event, pending counters, timeline, the
  ended-with-webhook stream and the closing log line, all in this one step. It is applied only
  if what the job was judged on still holds: the record's status is the one read, no worker holds
  the job's lock, and BullMQ still says what it said (the job failed, completed, or is not there).
  A second reaper (another API replica) finds it ended and changes nothing.
  KEYS[1] job record  KEYS[2] BullMQ job hash  KEYS[3] BullMQ lock  KEYS[4] BullMQ failed zset
  KEYS[5] BullMQ completed zset  KEYS[6] job log stream
  KEYS[7] the tier's job events  KEYS[8] the tier's pending counters  KEYS[9] this hour's timeline
  KEYS[10] the tier's ended-with-webhook stream
  ARGV[1] job id  ARGV[2] the record's status when judged
  ARGV[3] what BullMQ said: failed | completed | missing | unheld (a cancelled job no node holds)
  ARGV[4] final status  ARGV[5] status_reason ('' keeps the record's)  ARGV[6] error_message ('' keeps it)
  ARGV[7] now ms  ARGV[8] retention seconds  ARGV[9] log cap (lines)
  Returns {'ok', previous status, record}   ended now
          {'dup', status, record}            ended by a reaper before (its settling may be due again)
          {'skip', status}                   the job is not (or no longer) to be reaped
]]
-- @include job-status
-- @include job-event
local rec = KEYS[1]
if redis.call('EXISTS', rec) == 0 then return {'skip', ''} end
local cur = redis.call('HMGET', rec, 'status', 'finished_at', 'reaped')
local status = cur[1] or ''
if cur[2] then
  if cur[3] then return {'dup', status, redis.call('HGETALL', rec)} end
  return {'skip', status}
end
if status ~= ARGV[2] or redis.call('EXISTS', KEYS[3]) == 1 then return {'skip', status} end

local why = ARGV[3]
local holds
if why == 'failed' then
  holds = redis.call('ZSCORE', KEYS[4], ARGV[1]) ~= false
elseif why == 'completed' then
  holds = redis.call('ZSCORE', KEYS[5], ARGV[1]) ~= false
elseif why == 'missing' then
  holds = redis.call('EXISTS', KEYS[2]) == 0
elseif why == 'unheld' then
  holds = status == 'cancelled'
end
if not holds then return {'skip', status} end
-- Only a cancelled job (final, waiting for its node's confirmation) keeps its status.
if FINAL[status] and ARGV[4] ~= status then return {'skip', status} end

local newStatus = ARGV[4]
redis.call('HSET', rec, 'status', newStatus, 'finished_at', ARGV[7], 'updated_at', ARGV[7], 'reaped', why)
if ARGV[5] ~= '' then redis.call('HSET', rec, 'status_reason', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', rec, 'error_message', ARGV[6]) end
redis.call('EXPIRE', rec, ARGV[8])
endLog(KEYS[6], newStatus, ARGV[7], ARGV[9], ARGV[8])
jobEvent({KEYS[7], KEYS[8], KEYS[9], KEYS[10]}, rec, status, newStatus, ARGV[7], '1')
return {'ok', status, redis.call('HGETALL', rec)}
