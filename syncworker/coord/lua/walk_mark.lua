-- KEYS: run, enqueued, counters. ARGV: repo, ttl_ms if the run has none. The set lives as
-- long as its run.
local added = redis.call('sadd', KEYS[2], ARGV[1])
-- counted in the same step, so a crash cannot leave a repo marked but not in the total
if added == 1 and redis.call('exists', KEYS[1]) == 1 then
  redis.call('hincrby', KEYS[3], 'repos_total', 1)
end
local ttl = redis.call('pttl', KEYS[1])
if ttl <= 0 then ttl = ARGV[2] end
redis.call('pexpire', KEYS[2], ttl)
return added
