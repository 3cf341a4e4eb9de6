-- KEYS[1]: a request of the API (coord/requests.py). ARGV: new state, the time field it
-- sets ('started' or 'finished'), now, ttl_ms, the task's result as JSON ('' for none).
-- Moves only a request the API opened and that has not ended; re-arms its TTL.
local state = redis.call('hget', KEYS[1], 'state')
if not state or state == 'done' or state == 'failed' then return 0 end
redis.call('hset', KEYS[1], 'state', ARGV[1], ARGV[2], ARGV[3])
if ARGV[5] ~= '' then redis.call('hset', KEYS[1], 'result', ARGV[5]) end
redis.call('pexpire', KEYS[1], ARGV[4])
return 1
