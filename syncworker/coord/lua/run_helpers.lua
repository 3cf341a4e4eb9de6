-- Shared by the scripts that start, count or may end a run; prepended to them, after
-- `local RUN_KEYS = <n>` (coord/scripts.py). KEYS[1..RUN_KEYS] are Keys.run_keys(run_id),
-- in its order: run hash, counters, failures, repos (the per-repository marks), cursors,
-- live (the counts of repositories in flight); a script that may end the run passes the
-- runs' stats hash (Keys.run_stats) next, at KEYS[RUN_KEYS + 1].
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
-- The end of a run, counted once per registry and outcome for the metrics; a run without
-- failures also moves the registry's last success.
local function count_end(state, now)
  local stats = KEYS[RUN_KEYS + 1]
  local registry = redis.call('hget', KEYS[1], 'registry') or ''
  local ok = state == 'finished' and redis.call('llen', KEYS[3]) == 0
  redis.call('hincrby', stats, 'finished:' .. registry .. ':' .. (ok and 'ok' or 'failed'), 1)
  if ok then redis.call('hset', stats, 'last_ok:' .. registry, now) end
end
-- A finished run keeps its summary (hash, counters, failures) for the retention; its
-- per-repository marks, walked cursors and live counts only served the run while it went
-- on, so they go at once, and what finished runs hold does not grow with the catalog.
local function finish(state, now, retention_ms)
  redis.call('hset', KEYS[1], 'state', state, 'finished', now)
  redis.call('del', KEYS[4], KEYS[5], KEYS[6])
  expire_run(retention_ms)
  count_end(state, now)
end
-- For a running, walked run: finish it once every repository fanned out is counted (done,
-- failed or skipped).
local function complete(now, retention_ms)
  local c = redis.call('hmget', KEYS[2], 'repos_total', 'repos_done', 'repos_failed',
                       'repos_skipped')
  if tonumber(c[2] or 0) + tonumber(c[3] or 0) + tonumber(c[4] or 0) >= tonumber(c[1] or 0) then
    finish('finished', now, retention_ms)
  end
end
local function complete_if_done(now, retention_ms)
  local meta = redis.call('hmget', KEYS[1], 'state', 'walked')
  if meta[1] == 'running' and meta[2] == '1' then complete(now, retention_ms) end
end
