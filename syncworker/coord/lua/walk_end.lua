-- KEYS: the run's keys, the stats hash, walk, cursor. ARGV: run id, now, retention_ms.
-- The run is marked walked even if the marker was lost, so it can still complete.
local walk, cursor = KEYS[RUN_KEYS + 2], KEYS[RUN_KEYS + 3]
local owned = redis.call('get', walk) == ARGV[1]
if owned then redis.call('del', walk, cursor) end
if redis.call('exists', KEYS[1]) == 1 then
  redis.call('hset', KEYS[1], 'walked', '1')
  complete_if_done(ARGV[2], ARGV[3])
end
if owned then return 1 end
return 0
