-- Shared by the scripts that may end a run; prepended to them, after
-- `local RUN_KEYS = <n>` (coord/scripts.py). KEYS[1..RUN_KEYS] are Keys.run_keys(run_id),
-- in its order: run hash, counters, failures, repos (the per-repository marks), cursors.
local function expire_run(ttl_ms)
  for i = 1, RUN_KEYS do redis.call('pexpire', KEYS[i], ttl_ms) end
end
local function follow_run_ttl(key)
  local ttl = redis.call('pttl', KEYS[1])
  if ttl > 0 then redis.call('pexpire', key, ttl) end
end
local function add_failure(failure, max_failures)
  if redis.call('llen', KEYS[3]) < tonumber(max_failures) then
    redis.call('rpush', KEYS[3], failure)
    follow_run_ttl(KEYS[3])
  end
end
-- A finished run keeps its summary (hash, counters, failures) for the retention; its
-- per-repository marks and walked cursors only served the run while it went on, so they go
-- at once, and what finished runs hold does not grow with the catalog.
local function finish(state, now, retention_ms)
  redis.call('hset', KEYS[1], 'state', state, 'finished', now)
  redis.call('del', KEYS[4], KEYS[5])
  expire_run(retention_ms)
end
-- For a running, walked run: finish it once every repository fanned out is counted.
local function complete(now, retention_ms)
  local c = redis.call('hmget', KEYS[2], 'repos_total', 'repos_done', 'repos_failed')
  if tonumber(c[2] or 0) + tonumber(c[3] or 0) >= tonumber(c[1] or 0) then
    finish('finished', now, retention_ms)
  end
end
local function complete_if_done(now, retention_ms)
  local meta = redis.call('hmget', KEYS[1], 'state', 'walked')
  if meta[1] == 'running' and meta[2] == '1' then complete(now, retention_ms) end
end
