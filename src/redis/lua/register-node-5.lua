--[[
  Registers a node (and its agent key) atomically; node names are unique.
  KEYS[1] node-names hash   KEYS[2] nodes zset   KEYS[3] node record
  KEYS[4] api key record    KEYS[5] agent record
  ARGV[1] node name  ARGV[2] node id  ARGV[3] now ms
  ARGV[4] node fields json  ARGV[5] api key fields json  ARGV[6] agent fields json
  Returns {1} or {0, existing node id}.
]]
-- @include hash
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return {0, redis.call('HGET', KEYS[1], ARGV[1])}
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
hsetFromJson(KEYS[3], ARGV[4])
hsetFromJson(KEYS[4], ARGV[5])
hsetFromJson(KEYS[5], ARGV[6])
return {1}
