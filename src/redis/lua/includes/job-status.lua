local FINAL = { succeeded = true, failed = true, cancelled = true, timed_out = true }

local function csvSet(csv)
  local s = {}
  for item in string.gmatch(csv, '[^,]+') do s[item] = true end
  return s
end
