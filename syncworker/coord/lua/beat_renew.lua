-- KEYS: the beat lock. ARGV: token, TTL in ms. 1 when still ours and renewed, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
