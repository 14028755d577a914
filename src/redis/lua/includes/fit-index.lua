-- Moves a node's entries in the fit index from `appliedJson` to `desiredJson`, both lists of
-- [indexKey, score]. With `trusted` false the applied list may be stale (the live hash expired
-- and a reader may have dropped the node lazily), so every desired entry is written again.
local function applyFitIndex(nodeId, appliedJson, desiredJson, trusted)
  local applied = cjson.decode(appliedJson)
  local desired = cjson.decode(desiredJson)
  local want = {}
  for _, e in ipairs(desired) do want[e[1]] = e[2] end
  local had = {}
  for _, e in ipairs(applied) do
    had[e[1]] = e[2]
    if want[e[1]] == nil then redis.call('ZREM', e[1], nodeId) end
  end
  for key, score in pairs(want) do
    if not trusted or had[key] ~= score then redis.call('ZADD', key, score, nodeId) end
  end
end
