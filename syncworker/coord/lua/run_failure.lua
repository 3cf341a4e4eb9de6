-- KEYS: the run's keys. ARGV: failure JSON, max failures kept.
if redis.call('exists', KEYS[1]) == 0 then return 0 end
add_failure(ARGV[1], ARGV[2])
return 1
