local FINAL = { succeeded = true, failed = true, cancelled = true, timed_out = true }

local function csvSet(csv)
  local s = {}
  for item in string.gmatch(csv, '[^,]+') do s[item] = true end
  return s
end

-- The last line of a job's log says how it ended; it also wakes anyone following the log.
local function endLog(logKey, status, now, cap, retention)
  redis.call('XADD', logKey, 'MAXLEN', '~', cap, '*', 't', now, 's', 'system', 'm', 'job ended: ' .. status)
  redis.call('EXPIRE', logKey, retention)
end
