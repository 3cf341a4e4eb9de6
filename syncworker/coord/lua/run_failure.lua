-- KEYS: the run's keys. ARGV: failure JSON, max failures kept.
if redis.call('exists', KEYS[1]) == 0 then return 0 end
if redis.call('llen', KEYS[3]) < tonumber(ARGV[2]) then
  redis.call('rpush', KEYS[3], ARGV[1])
  follow_run_ttl(KEYS[3])
end
return 1
