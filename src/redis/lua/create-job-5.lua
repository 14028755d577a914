--[[
  Writes a new job's record and tells its tier's watchers that it is queued (see job-event).
  KEYS[1] job record  KEYS[2] the tier's job events  KEYS[3] the tier's pending counters
  KEYS[4] this hour's timeline  KEYS[5] the tier's ended-with-webhook stream (unused: a new job has not ended)
  ARGV[1] record fields (json of strings)  ARGV[2] now ms
]]
-- @include hash
-- @include job-event
hsetFromJson(KEYS[1], ARGV[1])
jobEvent({KEYS[2], KEYS[3], KEYS[4], KEYS[5]}, KEYS[1], '', 'queued', ARGV[2], '0')
return 1
