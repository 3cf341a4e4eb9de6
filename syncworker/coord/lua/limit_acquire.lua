-- KEYS: pause, next turn, slots of one upstream. ARGV: interval_ms (0: no rate limit),
-- max_concurrent (0: none), token, lease_ms. Returns 0 when the turn is taken, the
-- milliseconds to wait for a pause or the next turn, or -1 when every slot is taken.
-- Times are Redis's own (TIME), so workers' clocks need not agree.
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = tonumber(redis.call('get', KEYS[1]) or 0)
if paused > now then return math.ceil(paused - now) end
local limit = tonumber(ARGV[2])
if limit > 0 then
  -- A lease past its end belongs to a worker that died mid-request.
  redis.call('zremrangebyscore', KEYS[3], '-inf', now)
  if redis.call('zcard', KEYS[3]) >= limit then return -1 end
end
local interval = tonumber(ARGV[1])
if interval > 0 then
  local following = tonumber(redis.call('get', KEYS[2]) or 0)
  if following > now then return math.ceil(following - now) end
  -- A bucket of one turn: after an idle spell one request goes at once, the next waits.
  redis.call('set', KEYS[2], tostring(math.max(following, now) + interval),
             'PX', math.ceil(interval) + 1000)
end
if limit > 0 then
  redis.call('zadd', KEYS[3], now + tonumber(ARGV[4]), ARGV[3])
  redis.call('pexpire', KEYS[3], ARGV[4])
end
return 0
