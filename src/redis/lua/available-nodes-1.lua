--[[
  Walks one fit index from the best fit upward and returns live nodes with enough free CPU,
  RAM and a free job slot. Nodes whose live hash expired are dropped from the index on the way
  (they re-enter with their next heartbeat), so dead nodes cost one visit, not one per query.
  KEYS[1] fit index zset
  ARGV[1] min score (MiB free on the k-th GPU)  ARGV[2] cpu cores  ARGV[3] RAM MiB
  ARGV[4] offset (matches to skip)  ARGV[5] limit  ARGV[6] live hash key prefix
  ARGV[7] '1' when a node must have a free job slot (available now), '0' when not (capacity)
  Returns {{node ids...}, {their scores...}, more (0|1)}.
]]
local idx = KEYS[1]
local cpu, mem = tonumber(ARGV[2]), tonumber(ARGV[3])
local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local livePrefix = ARGV[6]
local needSlot = ARGV[7] ~= '0'
local out, scores, matched, start, chunk = {}, {}, 0, 0, 256
while true do
  local page = redis.call('ZRANGE', idx, ARGV[1], '+inf', 'BYSCORE', 'LIMIT', start, chunk, 'WITHSCORES')
  local removed, n = 0, #page / 2
  for i = 1, #page, 2 do
    local id = page[i]
    local v = redis.call('HMGET', livePrefix .. id, 'cpu_free', 'mem_free', 'slots_free')
    if not v[1] then
      redis.call('ZREM', idx, id)
      removed = removed + 1
    elseif tonumber(v[1]) >= cpu and tonumber(v[2]) >= mem and (not needSlot or tonumber(v[3]) > 0) then
      matched = matched + 1
      if matched > offset then
        if #out == limit then return {out, scores, 1} end
        out[#out + 1] = id
        scores[#scores + 1] = page[i + 1]
      end
    end
  end
  if n < chunk then break end
  start = start + chunk - removed
end
return {out, scores, 0}
