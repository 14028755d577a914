--[[
  Holds, or keeps holding, a reservation for a starving job: the node that holds it stops
  taking jobs that would use the devices the job needs, so they drain for it. One node at a
  time; the reservation lapses if its holder stops renewing it (it died).
  KEYS[1] the job's reservation key ("<job key>:ip-reserved")
  ARGV[1] node name  ARGV[2] ttl ms
  Returns 1 when this node holds it now, 0 when another node does.
]]
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
