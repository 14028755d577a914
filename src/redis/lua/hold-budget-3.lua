--[[
  Checks a submission against its owner's budget and, if it fits, holds its worst case until
  the job ends: what is left = budget - spent in the period - held by unfinished jobs.
  The user's budget_period picks which spend fields count (the caller cannot know it without
  a round trip of its own); a user without one has a monthly budget.
  KEYS[1] user limits  KEYS[2] user holds  KEYS[3] user spend
  ARGV[1..3] spend fields of the current day, week and month: csv of "<day>"
  ARGV[4] worst-case money of each job, csv  ARGV[5] worst-case GPU-hours of each job, csv
  ARGV[6..] the jobs' ids
  Returns {'ok'} or {'over', 'money'|'gpu_hours', budget, spent, held, asked, period}.
]]
local FIRST_ID = 6
local limits = redis.call('HMGET', KEYS[1], 'money_budget', 'gpu_hours_budget', 'budget_period')
local moneyBudget, gpuBudget = tonumber(limits[1]), tonumber(limits[2])
local period = limits[3]
local periodDays = ({ day = ARGV[1], week = ARGV[2], month = ARGV[3], total = 'total' })[period]
if not periodDays then
  period, periodDays = 'month', ARGV[3]
end
local money, gpu = {}, {}
for x in string.gmatch(ARGV[4], '[^,]+') do money[#money + 1] = tonumber(x) end
for x in string.gmatch(ARGV[5], '[^,]+') do gpu[#gpu + 1] = tonumber(x) end

if moneyBudget or gpuBudget then
  local spentMoney, spentGpu = 0, 0
  for day in string.gmatch(periodDays, '[^,]+') do
    local s = redis.call('HMGET', KEYS[3], 'm:' .. day, 'g:' .. day)
    spentMoney = spentMoney + (tonumber(s[1]) or 0)
    spentGpu = spentGpu + (tonumber(s[2]) or 0)
  end
  -- A job asked for again (a resumed submission, see idempotency.ts) is not counted twice.
  local asking = {}
  for i = FIRST_ID, #ARGV do asking[ARGV[i]] = true end
  local heldMoney, heldGpu = 0, 0
  local holds = redis.call('HGETALL', KEYS[2])
  for i = 1, #holds, 2 do
    if not asking[holds[i]] then
      local m, g = string.match(holds[i + 1], '([^|]+)|([^|]+)')
      heldMoney = heldMoney + tonumber(m)
      heldGpu = heldGpu + tonumber(g)
    end
  end
  local askMoney, askGpu = 0, 0
  for i = 1, #money do
    askMoney = askMoney + money[i]
    askGpu = askGpu + gpu[i]
  end
  if moneyBudget and spentMoney + heldMoney + askMoney > moneyBudget + 1e-9 then
    return {'over', 'money', tostring(moneyBudget), tostring(spentMoney), tostring(heldMoney), tostring(askMoney), period}
  end
  if gpuBudget and spentGpu + heldGpu + askGpu > gpuBudget + 1e-9 then
    return {'over', 'gpu_hours', tostring(gpuBudget), tostring(spentGpu), tostring(heldGpu), tostring(askGpu), period}
  end
end
for i = FIRST_ID, #ARGV do
  local j = i - FIRST_ID + 1
  redis.call('HSET', KEYS[2], ARGV[i], tostring(money[j]) .. '|' .. tostring(gpu[j]))
end
return {'ok'}
