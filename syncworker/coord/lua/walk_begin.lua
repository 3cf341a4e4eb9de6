-- KEYS: walk, cursor. ARGV: run id, ttl_ms. A new walk starts from the top of the catalog.
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('del', KEYS[2])
  return 1
end
return 0
