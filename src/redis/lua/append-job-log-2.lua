--[[
  Appends log lines of a job, only for the node that holds it, capped at a number of lines.
  KEYS[1] job record  KEYS[2] log stream
  ARGV[1] reporting node id ('' for an admin)  ARGV[2] max lines
  ARGV[3..] triples: time ms, stream, text
  Returns the number of lines written, or -1 (no such job) / -2 (not this node's job).
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'node_id') ~= ARGV[1] then return -2 end
local n = 0
for i = 3, #ARGV, 3 do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 't', ARGV[i], 's', ARGV[i + 1], 'm', ARGV[i + 2])
  n = n + 1
end
local ttl = redis.call('TTL', KEYS[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
return n
