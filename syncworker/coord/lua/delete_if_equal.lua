-- KEYS: one key. ARGV: the value it must still hold (a lock's token, a claim's source, the
-- API's coalescing entry). Deletes the key only then; 1 if deleted, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
