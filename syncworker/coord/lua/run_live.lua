-- KEYS: the run's keys. ARGV: repository, its counts so far (JSON). Sets the repository's
-- live counts, unless the run is gone or over or the repository is counted already (a
-- late duplicate delivery must not add its counts to the count that replaced them).
if redis.call('hget', KEYS[1], 'state') ~= 'running' then return 0 end
if redis.call('hexists', KEYS[4], 'done:' .. ARGV[1]) == 1 then return 0 end
redis.call('hset', KEYS[6], ARGV[1], ARGV[2])
follow_run_ttl(KEYS[6])
return 1
