-- KEYS: the run's keys. ARGV: now, retention_ms, once ('' for none), then name, amount
-- pairs. A run that is gone is left gone; a `once` token already counted in this run counts
-- nothing (a redelivery).
if redis.call('exists', KEYS[1]) == 0 then return 0 end
if ARGV[3] ~= '' then
  if redis.call('sadd', KEYS[5], ARGV[3]) == 0 then return 0 end
  follow_run_ttl(KEYS[5])
end
for i = 4, #ARGV, 2 do redis.call('hincrby', KEYS[2], ARGV[i], ARGV[i + 1]) end
complete_if_done(ARGV[1], ARGV[2])
return 1
