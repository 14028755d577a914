--[[
  A sliding-window rate limit for one subject (a user, a client address), shared by every API
  process on this Redis. The window is approximated from two fixed windows: the count of the
  current one plus the previous one's weighted by how much of it still overlaps the sliding
  window. Refused requests are not counted, so a client that waits as told gets in.
  The clock is Redis' own (TIME), so API processes with skewed clocks still agree.
  KEYS[1] the subject's counter (hash: i = index of the current fixed window, c = its count,
          p = the count of the window before it)
  ARGV[1] limit per window  ARGV[2] cost of this request (jobs in a batch; 1 otherwise)
  ARGV[3] window ms  ARGV[4] '1' to count the request when it is allowed, '0' only to ask
  Returns {allowed (1|0), remaining after it, ms until the current fixed window ends,
           ms until a request of this cost would be allowed (0 when allowed)}
]]
local key = KEYS[1]
local limit, cost, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local idx = math.floor(now / window)
local elapsed = now - idx * window

local stored = redis.call('HMGET', key, 'i', 'c', 'p')
local si, sc, sp = tonumber(stored[1]), tonumber(stored[2]) or 0, tonumber(stored[3]) or 0
local cur, prev = 0, 0
if si == idx then
  cur, prev = sc, sp
elseif si == idx - 1 then
  prev = sc
end

local weighted = prev * (window - elapsed) / window + cur
local untilReset = window - elapsed

if weighted + cost <= limit then
  if ARGV[4] == '1' then
    cur = cur + cost
    redis.call('HSET', key, 'i', idx, 'c', cur, 'p', prev)
    redis.call('PEXPIRE', key, 2 * window)
    weighted = weighted + cost
  end
  return {1, math.floor(limit - weighted), untilReset, 0}
end

-- Refused: how long until the previous window's share has decayed enough (or, if this window's
-- own count is already too high, until it has become the previous one and decayed in turn).
local wait
if cost > limit then
  wait = 2 * window
elseif cur + cost <= limit then
  local room = limit - cur - cost
  wait = math.ceil((window - room * window / prev) - elapsed)
else
  wait = untilReset + math.ceil(window - (limit - cost) * window / cur)
end
if wait < 1 then wait = 1 end
return {0, math.max(0, math.floor(limit - weighted)), untilReset, wait}
