--[[
  Looks at the first waiting jobs of one queue, in the order BullMQ would serve them, and says
  which one this agent should take: of the jobs that fit its free resources now, the one of the
  highest priority, and among those the one that leaves the least GPU memory stranded on the
  devices it would use (best fit), the oldest first on a tie. Claims nothing (claim-job does).

  It also names the first job that does not fit now but would fit this node empty and has
  waited past the starvation bound and that no other node holds a reservation for (or that
  this node holds), and the first such job another node holds, with its holder ("node|ms until
  its shadow time", by Redis' clock, so nodes' clocks need not agree), so this node can take over
  a reservation it would serve sooner.

  A device held for a starving job comes with the time that job could start at the latest; it
  takes only jobs whose time limit (`t`) ends by then.

  With a lock token it also claims the job it chose, in the same step, exactly as BullMQ's
  moveToActive would (so BullMQ's lock extension, stalled check and moveToFinished treat it as
  any other active job): agents racing for the same queue each get a job, not the same one.
  It may claim up to ARGV[10] jobs: after each, it takes what that job holds off the free
  resources and picks again, by the same rule, among the jobs it has read. A busy agent so takes
  a handful of small jobs in one step, and its reports about them travel together.

  A job's requirements are read from the string at the head of its payload
  (`{"v":2,"req":"g=..;m=..;f=..;c=..;r=..;n=..;s=..;p=..;t=..;u=.."`) without decoding the rest.

  KEYS[1] wait  KEYS[2] prioritized  KEYS[3] meta  KEYS[4] active  KEYS[5] events  KEYS[6] marker
  ARGV[1] job key prefix ("<queue prefix>:<queue name>:")
  ARGV[2] agent state, json:
          {"gpus": [[family, MiB free, MiB total (, held until ms)], ...], "cpu": n, "ram": MiB, "slots": n,
           "node": name, "labels": {k: v}, "prices": [per GPU-h, per core-h, per GiB-h],
           "capped": [owner, ...], "skip": [job id, ...]}
  ARGV[3] the same resources as if the node were empty (its capacity)
  ARGV[4] how many waiting jobs to look at  ARGV[5] now ms  ARGV[6] starvation bound ms
  ARGV[7] lock token ('' to only look; the n-th further job claimed gets "<token>-<n>")
  ARGV[8] lock duration ms  ARGV[9] worker name  ARGV[10] how many jobs to claim at most (1)
  Returns {best id, its priority, its stranded MiB, its timestamp,
           starving id, its timestamp, its reservation (this node's or ''),
           the claimed jobs, best first: {{id, hash (flat)}, ...} or {},
           starving job another node holds, its timestamp, its reservation }   ('' / 0 when none)
]]
-- @include lock-active
-- @include redis-now
local prefix = ARGV[1]
if redis.call('HEXISTS', KEYS[3], 'paused') == 1 then return {'', 0, 0, 0, '', 0, '', {}, '', 0, ''} end
local free = cjson.decode(ARGV[2])
local capacity = cjson.decode(ARGV[3])
local limit = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
local starvation = tonumber(ARGV[6])

local capped, skip = {}, {}
for _, u in ipairs(free.capped or {}) do capped[u] = true end
for _, id in ipairs(free.skip or {}) do skip[id] = true end

local function parse(data)
  if not data then return nil end
  local head = string.match(data, '^{"v":2,"req":"([^"]*)"')
  if not head then return nil end
  local f = {}
  for k, v in string.gmatch(head, '(%a)=([^;]*)') do f[k] = v end
  local req = { g = tonumber(f.g), m = tonumber(f.m), c = tonumber(f.c), r = tonumber(f.r), n = f.n, u = f.u, p = f.p, t = tonumber(f.t) }
  if not (req.g and req.m and req.c and req.r and f.f) then return nil end
  if f.f ~= '*' then
    req.f = {}
    for fam in string.gmatch(f.f, '[^,]+') do req.f[fam] = true end
  end
  if f.s and f.s ~= '*' then
    req.s = {}
    for k, v in string.gmatch(f.s, '([^,=]+)=([^,]*)') do req.s[k] = v end
  end
  return req
end

-- Stranded MiB if the job ran here now (the free memory left on the devices it would use), and
-- those devices; nil when it does not fit. Its GPUs come from one family: for each allowed
-- family, the devices with the least free memory that hold it.
local function fit(req, res)
  if res.slots < 1 or req.c > res.cpu or req.r > res.ram then return nil end
  if req.n and req.n ~= '*' and req.n ~= res.node then return nil end
  if req.s then
    for k, v in pairs(req.s) do
      if not res.labels or res.labels[k] ~= v then return nil end
    end
  end
  if req.g == 0 then
    if req.p and req.p ~= '*' then
      local rate = req.c * res.prices[2] + req.r / 1024 * res.prices[3]
      if rate > tonumber(req.p) + 1e-9 then return nil end
    end
    return 0
  end
  local byFamily = {}
  for _, gpu in ipairs(res.gpus) do
    local fam, mib, total, heldUntil = gpu[1], gpu[2], gpu[3], gpu[4]
    local usable = heldUntil == nil or (req.t ~= nil and now + req.t * 1000 <= heldUntil)
    if usable and mib >= req.m and (req.f == nil or req.f[fam]) then
      byFamily[fam] = byFamily[fam] or {}
      table.insert(byFamily[fam], { mib, total, gpu })
    end
  end
  local best, devices = nil, nil
  for _, list in pairs(byFamily) do
    if #list >= req.g then
      table.sort(list, function(a, b) return a[1] < b[1] end)
      local stranded, gpuPrice = 0, 0
      for i = 1, req.g do
        stranded = stranded + list[i][1] - req.m
        local share = 1
        if req.m > 0 and list[i][2] > 0 then share = math.min(1, req.m / list[i][2]) end
        gpuPrice = gpuPrice + res.prices[1] * share
      end
      local ok = true
      if req.p and req.p ~= '*' then
        local rate = gpuPrice + req.c * res.prices[2] + req.r / 1024 * res.prices[3]
        ok = rate <= tonumber(req.p) + 1e-9
      end
      if ok and (best == nil or stranded < best) then
        best, devices = stranded, {}
        for i = 1, req.g do devices[i] = list[i][3] end
      end
    end
  end
  return best, devices
end

-- BullMQ serves the wait list first (oldest at its tail), then the prioritized set.
local candidates = {}
local waiting = redis.call('LRANGE', KEYS[1], -limit, -1)
for i = #waiting, 1, -1 do candidates[#candidates + 1] = waiting[i] end
if #candidates < limit then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, limit - #candidates - 1)) do candidates[#candidates + 1] = id end
end

local want = ARGV[7] ~= '' and math.max(1, tonumber(ARGV[10] or '1') or 1) or 1
local bestId, bestPri, bestStranded, bestTs, bestInWait, bestDevices, bestReq = '', 0, 0, 0, false, nil, nil
-- Every job read that this node could take now, for the further claims of a batch.
local takeable = {}
local starvingId, starvingTs, holder = '', 0, ''
local otherId, otherTs, otherHolder = '', 0, ''
-- A reservation names its shadow time by Redis' clock; hand it on as the time left until then.
local function timeLeft(reservation)
  local by, shadow = string.match(reservation, '^(.*)|(%d+)$')
  if not by then return reservation end
  return by .. '|' .. string.format('%d', tonumber(shadow) - redisNowMs())
end
for n, id in ipairs(candidates) do
  -- Nothing later can beat a perfect fit of the best priority seen (later jobs are younger, and
  -- in the prioritized set of the same or a lower priority), once the starving check is done:
  -- with a perfect fit in hand, only the first 8 jobs are looked at for one that starves (every
  -- job read costs Redis a parse, and a deep queue of small jobs is read on every claim). A batch
  -- claim reads at least as many jobs as it may take.
  if bestId ~= '' and bestStranded == 0 and n > want and (starvingId ~= '' or n > 8) then break end
  local jobKey = prefix .. id
  local h = redis.call('HMGET', jobKey, 'data', 'defa', 'timestamp', 'priority')
  local req = parse(h[1])
  local ts = tonumber(h[3]) or 0
  -- BullMQ priority: 0 or 1 serve first, larger later. A job to fail (stalled too often) goes first.
  local pri = tonumber(h[4]) or 0
  -- The prioritized set is in priority order: past the best priority found, nothing is better.
  if bestId ~= '' and n > #waiting and pri > bestPri and starvingId ~= '' then break end
  local stranded, devices = nil, nil
  if skip[id] then
    stranded = nil
  elseif h[2] then
    stranded, pri = 0, -1
  elseif req and not capped[req.u] then
    stranded, devices = fit(req, free)
  end
  if stranded then
    -- A job to fail (defa) runs nothing: it holds no resources.
    local holds = (not h[2]) and req or nil
    takeable[#takeable + 1] = { id = id, req = holds, pri = pri, ts = ts, inWait = n <= #waiting }
    if bestId == '' or pri < bestPri or (pri == bestPri and (stranded < bestStranded or (stranded == bestStranded and ts < bestTs))) then
      bestId, bestPri, bestStranded, bestTs, bestInWait, bestDevices, bestReq = id, pri, stranded, ts, n <= #waiting, devices, holds
    end
  elseif starvingId == '' and req and not skip[id] and not capped[req.u] and now - ts >= starvation and fit(req, capacity) then
    local r = redis.call('GET', jobKey .. ':ip-reserved')
    local by = r and (string.match(r, '^(.*)|') or r)
    if not r or by == free.node then
      starvingId, starvingTs, holder = id, ts, r or ''
    elseif otherId == '' then
      otherId, otherTs, otherHolder = id, ts, r
    end
  end
end
local claimed = {}
if ARGV[7] ~= '' and bestId ~= '' then
  local pick = { id = bestId, req = bestReq, inWait = bestInWait, devices = bestDevices }
  local taken = {}
  while pick do
    if pick.inWait then redis.call('LREM', KEYS[1], 1, pick.id) else redis.call('ZREM', KEYS[2], pick.id) end
    local token = #claimed == 0 and ARGV[7] or (ARGV[7] .. '-' .. #claimed)
    claimed[#claimed + 1] = { pick.id, lockActive(prefix .. pick.id, pick.id, KEYS[4], KEYS[5], KEYS[6], token, ARGV[8], ARGV[5], ARGV[9]) }
    taken[pick.id] = true
    if #claimed >= want then break end
    -- What this job holds is no longer free (a job to fail only takes a slot).
    free.slots = free.slots - 1
    if pick.req then
      free.cpu = free.cpu - pick.req.c
      free.ram = free.ram - pick.req.r
      for _, gpu in ipairs(pick.devices or {}) do gpu[2] = gpu[2] - pick.req.m end
    end
    local nextPick, nPri, nStranded, nTs = nil, 0, 0, 0
    for _, t in ipairs(takeable) do
      if not taken[t.id] then
        local stranded, devices = 0, nil
        if t.req then stranded, devices = fit(t.req, free) elseif free.slots < 1 then stranded = nil end
        if stranded and (nextPick == nil or t.pri < nPri or (t.pri == nPri and (stranded < nStranded or (stranded == nStranded and t.ts < nTs)))) then
          nextPick, nPri, nStranded, nTs = { id = t.id, req = t.req, inWait = t.inWait, devices = devices }, t.pri, stranded, t.ts
        end
      end
    end
    pick = nextPick
  end
end
if holder ~= '' then holder = timeLeft(holder) end
if otherHolder ~= '' then otherHolder = timeLeft(otherHolder) end
return {bestId, bestPri, bestStranded, bestTs, starvingId, starvingTs, holder, claimed, otherId, otherTs, otherHolder}
