-- KEYS: the pull budget of one upstream identity (hash: remaining, limit, window,
-- refill), its GETs in flight (zset: token -> lease end). ARGV: token, reserve, lease_ms.
-- Returns 0 when a pull is taken; -2 when the budget is unknown and this sender is to
-- find out (its pull taken, should it learn nothing); -1 while another sender is finding
-- out; else the Unix time in ms at which it refills (the GET must not be sent).
-- remaining -1: the upstream declared no budget. Times are Redis's own (TIME).
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- A lease past its end belongs to a worker that died mid-request.
redis.call('zremrangebyscore', KEYS[2], '-inf', now)
local state = redis.call('hmget', KEYS[1], 'remaining', 'limit', 'window', 'refill')
local remaining = tonumber(state[1])
local refill = tonumber(state[4] or 0)
if remaining and refill > 0 and now >= refill then
  remaining = tonumber(state[2])
  redis.call('hset', KEYS[1], 'remaining', remaining, 'refill', 0)
  refill = 0
end
local flying = redis.call('zcard', KEYS[2])
if not remaining and flying > 0 then return -1 end
local answer = 0
if not remaining then answer = -2 end
if remaining and remaining >= 0 and remaining - flying <= tonumber(ARGV[2]) then
  if refill > 0 then return refill end
  return now + tonumber(state[3] or 0) * 1000
end
redis.call('zadd', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('pexpire', KEYS[2], ARGV[3])
return answer
