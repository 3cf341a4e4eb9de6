-- One start of a counted work ended (whatever its outcome): take it off the count of starts
-- that never ended, and drop the key at zero. Never below zero: a key expired in between
-- (DELIVERY_TTL) or ended twice must not make the next start look like none. The usual end,
-- the only start, is one GETDEL.
-- KEYS[1] = the work's delivery key. ARGV[1] = DELIVERY_TTL in seconds.
local left = (tonumber(redis.call('GETDEL', KEYS[1])) or 0) - 1
if left <= 0 then return 0 end
redis.call('SET', KEYS[1], left, 'EX', ARGV[1])
return left
