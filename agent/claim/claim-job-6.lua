--[[
  Claims, from one tier's queue, the first waiting job that fits this agent's free resources,
  and locks it exactly as BullMQ's moveToActive does, so that BullMQ's lock extension, stalled
  check and moveToFinished treat it as any other active job. Jobs that do not fit are left
  where they are, for other agents.

  A job's requirements are read from the compact string at the head of its payload
  (`{"v":1,"req":"g=..;m=..;f=..;c=..;r=.."`), without decoding the rest.

  KEYS[1] wait  KEYS[2] active  KEYS[3] prioritized  KEYS[4] events  KEYS[5] meta  KEYS[6] marker
  ARGV[1] job key prefix ("<queue prefix>:<queue name>:")
  ARGV[2] lock token  ARGV[3] lock duration ms  ARGV[4] now ms  ARGV[5] worker name
  ARGV[6] free resources, json {"gpus": [[family, MiB free], ...], "cpu": n, "ram": MiB, "slots": n}
  ARGV[7] the same as if the node were empty (its capacity)
  ARGV[8] how many waiting jobs to look at, in the order BullMQ would serve them
  Returns
    {1, job id, job hash (flat)}              claimed
    {0, blocked id, its timestamp, looked at} nothing fits now; blocked is the first job that
                                              would fit this node empty ('' if none)
]]
local prefix = ARGV[1]
if redis.call('HEXISTS', KEYS[5], 'paused') == 1 then return {0, '', 0, 0} end
local free = cjson.decode(ARGV[6])
local capacity = cjson.decode(ARGV[7])
local limit = tonumber(ARGV[8])

local function parse(data)
  if not data then return nil end
  local g, m, f, c, r = string.match(data, '^{"v":1,"req":"g=(%d+);m=(%d+);f=([^;"]+);c=([%d%.]+);r=(%d+)"')
  if not g then return nil end
  local families = nil
  if f ~= '*' then
    families = {}
    for fam in string.gmatch(f, '[^,]+') do families[fam] = true end
  end
  return { g = tonumber(g), m = tonumber(m), f = families, c = tonumber(c), r = tonumber(r) }
end

-- All GPUs of a job come from one family: count devices with enough free memory per family.
local function fits(req, res)
  if res.slots < 1 or req.c > res.cpu or req.r > res.ram then return false end
  if req.g == 0 then return true end
  local counts = {}
  for _, gpu in ipairs(res.gpus) do
    local fam, mib = gpu[1], gpu[2]
    if mib >= req.m and (req.f == nil or req.f[fam]) then
      counts[fam] = (counts[fam] or 0) + 1
      if counts[fam] >= req.g then return true end
    end
  end
  return false
end

-- BullMQ serves the wait list first (oldest at its tail), then the prioritized set.
local candidates = {}
local waiting = redis.call('LRANGE', KEYS[1], -limit, -1)
for i = #waiting, 1, -1 do candidates[#candidates + 1] = { waiting[i], true } end
if #candidates < limit then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, limit - #candidates - 1)) do
    candidates[#candidates + 1] = { id, false }
  end
end

local blockedId, blockedTs = '', 0
for _, cand in ipairs(candidates) do
  local id, inWait = cand[1], cand[2]
  local jobKey = prefix .. id
  local f = redis.call('HMGET', jobKey, 'data', 'defa', 'timestamp')
  local req = parse(f[1])
  -- A job BullMQ marked for failure (stalled too often) is taken by anyone, to be failed.
  if f[2] or (req and fits(req, free)) then
    if inWait then redis.call('LREM', KEYS[1], 1, id) else redis.call('ZREM', KEYS[3], id) end
    redis.call('LPUSH', KEYS[2], id)
    redis.call('SET', jobKey .. ':lock', ARGV[2], 'PX', ARGV[3])
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', 10000, '*', 'event', 'active', 'jobId', id, 'prev', 'waiting')
    redis.call('HSET', jobKey, 'processedOn', ARGV[4], 'pb', ARGV[5])
    redis.call('HINCRBY', jobKey, 'ats', 1)
    redis.call('ZADD', KEYS[6], 0, '0')
    return { 1, id, redis.call('HGETALL', jobKey) }
  end
  if blockedId == '' and req and fits(req, capacity) then
    blockedId = id
    blockedTs = tonumber(f[3]) or 0
  end
end
return { 0, blockedId, blockedTs, #candidates }
