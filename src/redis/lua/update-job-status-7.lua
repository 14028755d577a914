--[[
  Applies a status an agent (or an admin) reports for a job, atomically with the checks that
  make it safe: the reporter holds the job's BullMQ lock, the job is assigned to its node, and
  the move is allowed from the current status. A final status is written once.
  KEYS[1] job record  KEYS[2] BullMQ lock of the job  KEYS[3] job log stream
  KEYS[4] the tier's job events  KEYS[5] the tier's pending counters  KEYS[6] this hour's timeline
  KEYS[7] the tier's ended-with-webhook stream
  ARGV[1] new status  ARGV[2] reporting node id ('' for an admin)
  ARGV[3] lock token  ARGV[4] '1' when the token must match the lock
  ARGV[5] statuses allowed before the new one (csv)  ARGV[6] fields to set (json of strings)
  ARGV[7] now ms  ARGV[8] retention seconds (applied once final)  ARGV[9] log cap (lines)
  ARGV[10] how long the job ran (ms; 0 unknown), for a job that ends before its running report
  Returns one of (the record's fields after the change at the end, so no second read is needed)
    {'ok', previous status, final ('1'|'0'), record}   the status was applied
    {'retry', previous status, failures, record}       a failure with retries left: queued again
  A job sent back to the queue ('queued', or 'retry') after it ran keeps the attempt to bill in
  its record, `pending_attempt` = "attempt|started ms|ended ms|node id|reported status|hourly
  rate|GPU share", in the same step, so the charge survives a crash of the API before it is
  settled (and the next attempt's rate does not replace this one's).
    {'dup', current status, '', record}                the same final report again: nothing changed
    {'err', code, current status}                      code: not_found | lock_lost | not_assigned | conflict
]]
-- @include hash
-- @include job-status
-- @include job-event
local rec, lock = KEYS[1], KEYS[2]
local watch = {KEYS[4], KEYS[5], KEYS[6], KEYS[7]}
local newStatus, reporter, token = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', rec) == 0 then return {'err', 'not_found', ''} end
local cur = redis.call('HMGET', rec, 'status', 'node_id', 'finished_at', 'failures', 'max_retries')
local status, node = cur[1], cur[2] or ''

if ARGV[4] == '1' and redis.call('GET', lock) ~= token then return {'err', 'lock_lost', status} end
if newStatus ~= 'assigned' and reporter ~= '' and node ~= reporter then return {'err', 'not_assigned', status} end
-- A claim of a job assigned to another node is a new claim (a stalled job BullMQ handed on, with
-- a lock of its own), never the same claim: another agent that read that node's lock token from
-- the queue's keys may not take the job over with it.
if newStatus == 'assigned' and reporter ~= '' and node ~= '' and node ~= reporter
  and redis.call('HGET', rec, 'claim_sha1') == redis.sha1hex(token) then
  return {'err', 'not_assigned', status}
end

if FINAL[status] then
  if status == newStatus and (reporter == '' or node == reporter) then
    -- A job cancelled while it ran ends when its agent confirms the container stopped.
    if not cur[3] then
      hsetFromJson(rec, ARGV[6])
      redis.call('HSET', rec, 'finished_at', ARGV[7], 'updated_at', ARGV[7])
      endLog(KEYS[3], status, ARGV[7], ARGV[9], ARGV[8])
      redis.call('EXPIRE', rec, ARGV[8])
      jobEvent(watch, rec, status, status, ARGV[7], '1')
      return {'ok', status, '1', redis.call('HGETALL', rec)}
    end
    return {'dup', status, '', redis.call('HGETALL', rec)}
  end
  return {'err', 'conflict', status}
end
if not csvSet(ARGV[5])[status] then return {'err', 'conflict', status} end

if newStatus == 'assigned' then
  redis.call('HDEL', rec, 'started_at', 'progress', 'exit_code', 'status_message', 'status_reason')
  redis.call('HINCRBY', rec, 'attempts', 1)
  redis.call('HSET', rec, 'node_id', reporter, 'assigned_at', ARGV[7], 'claim_sha1', redis.sha1hex(token))
end

-- The attempt that ran, to be billed: from its running report, else from how long the agent says it ran.
local function keepAttempt()
  local a = redis.call('HMGET', rec, 'started_at', 'node_id', 'attempts', 'hourly_rate', 'gpu_share')
  local started = a[1]
  local ran = tonumber(ARGV[10]) or 0
  if not started and ran > 0 then started = string.format('%d', tonumber(ARGV[7]) - math.floor(ran)) end
  if started and a[2] and a[2] ~= '' then
    local attempt = {a[3] or '0', started, ARGV[7], a[2], newStatus, a[4] or '0', a[5] or '0'}
    redis.call('HSET', rec, 'pending_attempt', table.concat(attempt, '|'))
  end
end

if newStatus == 'queued' then
  keepAttempt()
  hsetFromJson(rec, ARGV[6])
  redis.call('HSET', rec, 'status', 'queued', 'updated_at', ARGV[7])
  redis.call('HDEL', rec, 'node_id', 'assigned_at', 'started_at', 'progress')
  jobEvent(watch, rec, status, 'queued', ARGV[7], '0')
  return {'ok', status, '0', redis.call('HGETALL', rec)}
end

local failures = tonumber(cur[4] or '0')
if (newStatus == 'failed' or newStatus == 'timed_out') and failures < tonumber(cur[5] or '0') then
  keepAttempt()
  hsetFromJson(rec, ARGV[6])
  redis.call('HSET', rec, 'status', 'queued', 'failures', failures + 1, 'updated_at', ARGV[7])
  redis.call('HDEL', rec, 'node_id', 'assigned_at', 'started_at', 'progress')
  jobEvent(watch, rec, status, 'queued', ARGV[7], '0')
  return {'retry', status, tostring(failures + 1), redis.call('HGETALL', rec)}
end

hsetFromJson(rec, ARGV[6])
redis.call('HSET', rec, 'status', newStatus, 'updated_at', ARGV[7])
local started = false
if newStatus == 'running' and not redis.call('HGET', rec, 'started_at') then
  redis.call('HSET', rec, 'started_at', ARGV[7])
  started = true
end
local final = '0'
if FINAL[newStatus] then
  final = '1'
  local ran = tonumber(ARGV[10]) or 0
  if ran > 0 and not redis.call('HGET', rec, 'started_at') then
    redis.call('HSET', rec, 'started_at', tostring(tonumber(ARGV[7]) - ran))
    started = true
  end
  redis.call('HSET', rec, 'finished_at', ARGV[7])
  redis.call('EXPIRE', rec, ARGV[8])
  endLog(KEYS[3], newStatus, ARGV[7], ARGV[9], ARGV[8])
end
jobEvent(watch, rec, status, newStatus, ARGV[7], final, started)
return {'ok', status, final, redis.call('HGETALL', rec)}
