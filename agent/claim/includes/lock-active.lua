-- Locks a job taken off the waiting lists exactly as BullMQ's moveToActive does (so BullMQ's
-- lock extension, stalled check and moveToFinished treat it as any other active job), drops any
-- reservation for it, and returns its hash (flat).
local function lockActive(jobKey, id, activeKey, eventsKey, markerKey, token, durationMs, now, worker)
  redis.call('LPUSH', activeKey, id)
  redis.call('SET', jobKey .. ':lock', token, 'PX', durationMs)
  redis.call('DEL', jobKey .. ':ip-reserved')
  redis.call('XADD', eventsKey, 'MAXLEN', '~', 10000, '*', 'event', 'active', 'jobId', id, 'prev', 'waiting')
  redis.call('HSET', jobKey, 'processedOn', now, 'pb', worker)
  redis.call('HINCRBY', jobKey, 'ats', 1)
  redis.call('ZADD', markerKey, 0, '0')
  return redis.call('HGETALL', jobKey)
end
