-- KEYS: pause of one upstream. ARGV: milliseconds. Extends the pause, never shortens it.
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wanted = now + tonumber(ARGV[1])
local current = tonumber(redis.call('get', KEYS[1]) or 0)
if wanted > current then
  redis.call('set', KEYS[1], tostring(wanted), 'PX', ARGV[1])
  return 1
end
return 0
