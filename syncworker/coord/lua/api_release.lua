-- KEYS: the API's entry. ARGV: the value recorded by a claim whose task could not be sent.
-- Deletes the entry only if it still holds that value.
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end
return 0
