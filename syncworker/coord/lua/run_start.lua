-- KEYS: the run's keys, the stats hash, then the runs zset (last). ARGV: registry,
-- started, ttl_ms, prune_before, run id, counter names... Returns 0 if the run existed
-- already (a retried trigger), which counts no second start.
if redis.call('exists', KEYS[1]) == 1 then return 0 end
redis.call('hset', KEYS[1], 'registry', ARGV[1], 'state', 'running', 'started', ARGV[2])
redis.call('hincrby', KEYS[RUN_KEYS + 1], 'started:' .. ARGV[1], 1)
for i = 6, #ARGV do redis.call('hset', KEYS[2], ARGV[i], 0) end
redis.call('pexpire', KEYS[1], ARGV[3])
redis.call('pexpire', KEYS[2], ARGV[3])
redis.call('zadd', KEYS[#KEYS], ARGV[2], ARGV[5])
redis.call('zremrangebyscore', KEYS[#KEYS], '-inf', ARGV[4])
return 1
