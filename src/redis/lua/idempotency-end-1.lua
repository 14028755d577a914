--[[
  Ends an attempt on an Idempotency-Key, if the attempt still owns it (an attempt that outlived
  its lease was taken over, and the one that took over ends it instead).
  KEYS[1] the key's record
  ARGV[1] the attempt's token  ARGV[2] 'done' | 'release' | 'yield'
  ARGV[3] the answer's status  ARGV[4] the answer's body (for 'done')
    done:    remember the answer, to replay for the rest of the record's life
    release: forget the key (nothing was created: the request was refused)
    yield:   end the lease now, so the client's retry takes over at once
  Returns 1, or 0 when another attempt owns the key.
]]
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
if ARGV[2] == 'done' then
  redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[3], 'body', ARGV[4])
elseif ARGV[2] == 'release' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'lease', '0')
end
return 1
