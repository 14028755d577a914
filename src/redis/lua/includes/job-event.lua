-- A job's status change, told to whoever watches its tier: appended to the tier's event stream
-- (dashboards, `?wait=`, webhooks), and kept in the tier's pending-work counters and per-minute
-- counters, all in the same step as the change itself so none of them can drift from the record.
-- The stream is for live readers, which keep up within milliseconds: a thousand entries is plenty
-- and keeps its memory small.
-- keys = {events stream, pending hash, timeline hash of this hour, webhook stream}; final: '1' once the job has
-- ended for good (its finished_at is set); started: true when this change set its started_at.
local function jobEvent(keys, rec, prev, status, now, final, started)
  local f = redis.call('HMGET', rec, 'id', 'owner', 'node_id', 'has_webhook', 'gpu_count', 'gpu_memory_mib', 'progress')
  redis.call('XADD', keys[1], 'MAXLEN', '~', 1000, '*', 'job', f[1] or '', 'user', f[2] or '',
    'status', status, 'prev', prev, 'node', f[3] or '', 'at', now, 'hook', f[4] or '0', 'final', final,
    'progress', f[7] or '')
  -- The webhook dispatcher's own stream: never trimmed, so no delivery is lost to a busy tier.
  if final == '1' and f[4] == '1' then
    redis.call('XADD', keys[4], '*', 'job', f[1] or '', 'user', f[2] or '', 'status', status, 'at', now,
      'hook', '1', 'final', '1')
  end
  local wasQueued, isQueued = prev == 'queued', status == 'queued' and final ~= '1'
  if wasQueued ~= isQueued then
    local sign = isQueued and 1 or -1
    redis.call('HINCRBY', keys[2], 'jobs', sign)
    -- Only when non-zero: Lua writes 0 * -1 as "-0", which HINCRBY refuses.
    local mib = (tonumber(f[5] or '0') or 0) * (tonumber(f[6] or '0') or 0)
    if mib ~= 0 then redis.call('HINCRBY', keys[2], 'gpu_mib', sign * mib) end
  end
  local minute = math.floor(tonumber(now) / 60000) % 60
  local counted = false
  if started then
    redis.call('HINCRBY', keys[3], 's' .. minute, 1)
    counted = true
  end
  if final == '1' then
    redis.call('HINCRBY', keys[3], 'f' .. minute, 1)
    counted = true
  end
  -- Two hours: the last hour is always whole.
  if counted then redis.call('EXPIRE', keys[3], 7200) end
end
