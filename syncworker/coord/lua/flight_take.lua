-- KEYS[1]: a blob flight's lock. ARGV: the holder's token as the waiter saw it, the waiter's
-- token, the lock's TTL in ms. The waiter becomes the holder only if the holder it saw (and
-- found making no progress) still holds it: two waiters never both take one flight over.
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
