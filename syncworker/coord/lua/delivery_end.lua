-- One start of a counted work ended (whatever its outcome): take it off the count of starts
-- that never ended, and drop the key at zero. Never below zero: a key expired in between
-- (DELIVERY_TTL) or ended twice must not make the next start look like none.
-- KEYS[1] = the work's delivery key.
local left = redis.call('DECR', KEYS[1])
if left <= 0 then
    redis.call('DEL', KEYS[1])
    return 0
end
return left
