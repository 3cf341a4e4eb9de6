-- Shared by the scripts that may end a run; prepended to them, after
-- `local RUN_KEYS = <n>` (coord/scripts.py). KEYS[1..RUN_KEYS] are Keys.run_keys(run_id),
-- in its order: run hash, counters, failures, enqueued, counted.
local function expire_run(ttl_ms)
  for i = 1, RUN_KEYS do redis.call('pexpire', KEYS[i], ttl_ms) end
end
local function follow_run_ttl(key)
  local ttl = redis.call('pttl', KEYS[1])
  if ttl > 0 then redis.call('pexpire', key, ttl) end
end
local function finish(state, now, retention_ms)
  redis.call('hset', KEYS[1], 'state', state, 'finished', now)
  expire_run(retention_ms)
end
local function complete_if_done(now, retention_ms)
  if redis.call('hget', KEYS[1], 'walked') ~= '1' then return end
  if redis.call('hget', KEYS[1], 'state') ~= 'running' then return end
  local c = redis.call('hmget', KEYS[2], 'repos_total', 'repos_done', 'repos_failed')
  local total = tonumber(c[1] or 0)
  if tonumber(c[2] or 0) + tonumber(c[3] or 0) >= total then
    finish('finished', now, retention_ms)
  end
end
