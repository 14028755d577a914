--[[
  Removes a node and everything that belongs to it: record, live hash, fit index entries,
  name, agent key and agent record, stats and pending cancels.
  KEYS[1] node record  KEYS[2] live hash  KEYS[3] node-names  KEYS[4] nodes zset
  KEYS[5] stats  KEYS[6] pending cancels
  ARGV[1] node id
  Returns 0 when the node does not exist, else 1.
]]
-- @include fit-index
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local rec = redis.call('HMGET', KEYS[1], 'node_name', 'idx', 'api_key_key', 'agent_key')
applyFitIndex(ARGV[1], rec[2] or '[]', '[]', true)
if rec[1] then redis.call('HDEL', KEYS[3], rec[1]) end
if rec[3] then redis.call('DEL', rec[3]) end
if rec[4] then redis.call('DEL', rec[4]) end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[5], KEYS[6])
return 1
