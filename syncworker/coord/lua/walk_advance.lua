-- KEYS: cursor, walk. ARGV: has_expected, expected, has_new, new, ttl_ms.
-- A missing key stands for "no cursor" (start of the catalog, or its end).
local current = redis.call('get', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
if ARGV[3] == '1' then
  redis.call('set', KEYS[1], ARGV[4], 'PX', ARGV[5])
else
  redis.call('del', KEYS[1])
end
redis.call('pexpire', KEYS[2], ARGV[5])
return 1
