-- KEYS: the run's keys. Reads a run's status in one step: its hash, counters, failures and
-- the live counts of its repositories not counted yet. The count that replaces a
-- repository's live counts drops them in one step too, so a reading sees each repository in
-- the counters or in the live counts, never in neither and never in both. A live field whose
-- repository is marked done (a killed delivery's, the redelivery that counted it having
-- written none) is left out.
local live = redis.call('hgetall', KEYS[6])
local uncounted = {}
for i = 1, #live, 2 do
  if redis.call('hexists', KEYS[4], 'done:' .. live[i]) == 0 then
    uncounted[#uncounted + 1] = live[i + 1]
  end
end
return {
  redis.call('hgetall', KEYS[1]),
  redis.call('hgetall', KEYS[2]),
  redis.call('lrange', KEYS[3], 0, -1),
  uncounted,
}
