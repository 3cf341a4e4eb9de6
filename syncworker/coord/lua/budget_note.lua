-- KEYS: the pull budget of one upstream identity, its GETs in flight (see
-- budget_take.lua). ARGV: token ('' for none), what ('seen', 'none' or 'forgo'), limit,
-- remaining, window (seconds), when the answered request was sent (Unix ms, the sender's
-- clock), the clock skew allowed (ms). 'seen': an answer declared the budget; 'none': an answer
-- declared none; 'forgo': the GET got no answer, its pull counted as spent. The hash
-- lives a window past its last change (a day when the upstream has no budget).
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local flown = 0
if ARGV[1] ~= '' then flown = redis.call('zrem', KEYS[2], ARGV[1]) end
local what = ARGV[2]
if what == 'none' then
  redis.call('hset', KEYS[1], 'remaining', -1)
  redis.call('expire', KEYS[1], 86400)
  return 1
end
local before = tonumber(redis.call('hget', KEYS[1], 'remaining'))
if what == 'forgo' then
  if flown == 1 and before and before > 0 then
    redis.call('hset', KEYS[1], 'remaining', before - 1)
  end
  return 1
end
local limit, remaining, window = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
-- Answers are noted in any order: a higher count is believed only from a request sent
-- after the count last went down (an older answer's would overspend).
local lowered = tonumber(redis.call('hget', KEYS[1], 'lowered') or 0)
if before and before >= 0 and before < remaining
   and tonumber(ARGV[6]) <= lowered + tonumber(ARGV[7]) then
  remaining = before
end
redis.call('hset', KEYS[1], 'remaining', remaining, 'limit', limit, 'window', window)
if remaining < limit and (not before or before < 0 or remaining < before) then
  redis.call('hset', KEYS[1], 'refill', now + window * 1000, 'lowered', now)
elseif remaining >= limit then
  redis.call('hset', KEYS[1], 'refill', 0)
end
redis.call('expire', KEYS[1], window + 60)
return 1
