-- KEYS: the run's keys, the stats hash. ARGV: now, retention_ms, once ('' for none),
-- clear_live ('1': drop once's live counts), max failures, n, then n failure JSONs, then
-- name, amount pairs (only counters that change). Counts nothing in a run that is gone or
-- over, nor for a `once` token already counted in this run (a redelivery). The live counts
-- go in the same step as the count that replaces them, so a reader never sees both.
-- Failures go first: whoever sees the run finished reads them all. Counting `once` (a
-- repository) also drops what a pull budget held back of it (runstate.DEFERRED), read in the
-- same HMGET, so a repository never deferred costs no command for it.
local meta = redis.call('hmget', KEYS[1], 'state', 'walked', 'deferred:' .. ARGV[3])
if meta[3] then redis.call('hdel', KEYS[1], 'deferred:' .. ARGV[3]) end
if meta[1] ~= 'running' then return 0 end
if ARGV[4] == '1' then redis.call('hdel', KEYS[6], ARGV[3]) end
if ARGV[3] ~= '' and redis.call('hsetnx', KEYS[4], 'done:' .. ARGV[3], 1) == 0 then
  return 0
end
local last_failure = 6 + tonumber(ARGV[6])
for i = 7, last_failure do add_failure(ARGV[i], ARGV[5]) end
for i = last_failure + 1, #ARGV, 2 do redis.call('hincrby', KEYS[2], ARGV[i], ARGV[i + 1]) end
if meta[2] == '1' then complete(ARGV[1], ARGV[2]) end
return 1
