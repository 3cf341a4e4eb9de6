-- KEYS: the run's keys, the stats hash. ARGV: state, now, retention_ms. The first finish wins; later ones
-- only re-arm the TTL.
if redis.call('exists', KEYS[1]) == 0 then return 0 end
if redis.call('hget', KEYS[1], 'state') == 'running' then
  finish(ARGV[1], ARGV[2], ARGV[3])
else
  expire_run(ARGV[3])
end
return 1
