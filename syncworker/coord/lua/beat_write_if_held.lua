-- KEYS: the beat lock, an entry's hash, the schedule's sorted set. ARGV: token, the entry's
-- meta (its last run), its next due time (score). RedBeat's own writes of the same two
-- fields, made atomic with the ownership check: 1 when written, 0 when the lock is not ours.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
redis.call('HSET', KEYS[2], 'meta', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], KEYS[2])
return 1
