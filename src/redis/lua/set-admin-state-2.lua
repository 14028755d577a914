--[[
  Cordons, drains or reactivates a node. A node that is not active leaves the fit index at
  once; one made active again re-enters it from its last heartbeat, if it is live.
  KEYS[1] node record  KEYS[2] live hash
  ARGV[1] node id  ARGV[2] new admin state
  Returns 0 when the node does not exist, else 1.
]]
-- @include fit-index
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'admin_state', ARGV[2])
local applied = redis.call('HGET', KEYS[1], 'idx') or '[]'
local desired = '[]'
if ARGV[2] == 'active' then desired = redis.call('HGET', KEYS[2], 'idx_desired') or '[]' end
applyFitIndex(ARGV[1], applied, desired, false)
redis.call('HSET', KEYS[1], 'idx', desired)
return 1
