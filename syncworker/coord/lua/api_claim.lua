-- KEYS: the API's entry of one (registry, repository, reference). ARGV: digest, task id, ttl.
-- Returns the task id already sent for this digest, or false after recording ours.
local current = redis.call('get', KEYS[1])
local mark = ARGV[1] .. ' '
if current and string.sub(current, 1, #mark) == mark then
  return string.sub(current, #mark + 1)
end
redis.call('set', KEYS[1], mark .. ARGV[2], 'EX', ARGV[3])
return false
