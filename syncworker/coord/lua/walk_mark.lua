-- KEYS: the run's keys. ARGV: ttl_ms if the run has none, then repositories just sent.
-- Marks each sent in this run and counts the newly marked into repos_total in the same step,
-- so a crash cannot leave one marked but not in the total. Returns how many were new.
local added = 0
for i = 2, #ARGV do added = added + redis.call('hsetnx', KEYS[4], 'sent:' .. ARGV[i], 1) end
if added > 0 and redis.call('exists', KEYS[1]) == 1 then
  redis.call('hincrby', KEYS[2], 'repos_total', added)
end
local ttl = redis.call('pttl', KEYS[1])
if ttl <= 0 then ttl = ARGV[1] end
redis.call('pexpire', KEYS[4], ttl)
return added
