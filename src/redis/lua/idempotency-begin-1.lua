--[[
  Starts a request that carries an Idempotency-Key, or says what became of an earlier one.
  KEYS[1] the key's record (hash: fp, ids, state, owner, lease, status, body)
  ARGV[1] the request's fingerprint  ARGV[2] the job ids it would create (csv)
  ARGV[3] this attempt's token  ARGV[4] now ms  ARGV[5] lease ms  ARGV[6] how long the record lasts, ms
  Returns one of:
    {'new'}                this attempt owns the key and submits ARGV[2]
    {'mismatch'}           the key was used for a different request
    {'done', status, body} the first answer, to replay
    {'busy', ms left}      an earlier attempt is still within its lease
    {'resume', ids}        an earlier attempt died (its lease ran out): this one takes over and
                           submits the same ids, so it cannot make a second set of jobs
]]
local now, lease = tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'ids', ARGV[2], 'state', 'pending', 'owner', ARGV[3], 'lease', now + lease)
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  return {'new'}
end
local r = redis.call('HMGET', KEYS[1], 'fp', 'ids', 'state', 'lease', 'status', 'body')
if r[1] ~= ARGV[1] then return {'mismatch'} end
if r[3] == 'done' then return {'done', r[5], r[6]} end
local left = (tonumber(r[4]) or 0) - now
if left > 0 then return {'busy', tostring(left)} end
redis.call('HSET', KEYS[1], 'owner', ARGV[3], 'lease', now + lease)
return {'resume', r[2]}
