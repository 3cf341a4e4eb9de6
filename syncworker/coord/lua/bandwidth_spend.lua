-- KEYS: the next free instant of one upstream's download rate. ARGV: bytes read,
-- bytes per second, burst_ms. Returns the milliseconds to wait before reading more.
-- Moves the instant on by the bytes' share of a second, from no earlier than burst_ms
-- ago (an idle upstream keeps that much credit). Times are Redis's own (TIME).
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local stored = tonumber(redis.call('get', KEYS[1]) or 0)
local start = now
if stored > 0 then start = math.max(stored, now - tonumber(ARGV[3])) end
local following = start + tonumber(ARGV[1]) * 1000 / tonumber(ARGV[2])
redis.call('set', KEYS[1], tostring(following),
           'PX', math.ceil(following - now + tonumber(ARGV[3])) + 1000)
return math.max(0, math.ceil(following - now))
