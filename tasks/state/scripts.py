"""The Lua scripts of the run store: one script per transition, so every check a transition depends on
(the run still going, the cluster lock still the run's, the phase lease still the caller's) and every
write it makes (phase record, run record, lock, event) happen in ONE round trip, all or nothing.

Every phase script is ``PRELUDE`` + its body, and is called with the same keys and leading arguments:

    KEYS: 1 run hash, 2 phases hash, 3 events stream, 4 active-runs set, 5 cluster lock, 6 fence counter,
          7 lease index
    ARGV: 1 node, 2 phase path, 3 now (UTC ISO 8601), 4 events maxlen, 5 lock TTL in ms ('' when the
          run's kind takes no lock), then the script's own arguments (6...)

Replies are ``{verdict, detail}`` (strings): see ``tasks.state.transitions.Verdict``. Lease times are
Redis server time in milliseconds (``TIME``), so workers on machines with skewed clocks agree on them.
Schema of what they write: ``tasks.state.store``.
"""

from __future__ import annotations

PRELUDE = """
local RUN, PHASES, EVENTS, ACTIVE, LOCK, FENCE, LEASES = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6],
  KEYS[7]
local NODE, PATH, NOW, MAXLEN, LOCK_TTL = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local P = NODE .. '|' .. PATH .. '|'

local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function event(node, path, name, attempt, message)
  redis.call('XADD', EVENTS, 'MAXLEN', '~', MAXLEN, '*', 'ts', NOW, 'node', node, 'phase', path,
    'event', name, 'attempt', attempt, 'message', message)
end

-- The lease index: by this deadline the phase must have moved on (renewed, succeeded and its
-- successor claimed, or retried); a worker's sweep re-sends what missed it (workflows.liveness).
local function index(run_id, deadline)
  redis.call('ZADD', LEASES, deadline, run_id .. '|' .. P)
end

local function load_run()
  local r = redis.call('HMGET', RUN, 'id', 'status', 'fence')
  return r[1], r[2], r[3] or ''
end

-- nil while the run holds its cluster lock (renewed here; re-taken with a new fencing token if it
-- lapsed and nobody took it), else the lock's JSON: another run took the cluster over.
local function hold_lock(run_id, fence)
  if LOCK_TTL == '' then return nil end
  local cur = redis.call('GET', LOCK)
  if cur then
    local h = cjson.decode(cur)
    if h.owner == run_id and tostring(h.token) == fence then
      redis.call('PEXPIRE', LOCK, LOCK_TTL)
      return nil
    end
    return cur
  end
  local token = redis.call('INCR', FENCE)
  redis.call('SET', LOCK, cjson.encode({owner = run_id, token = token, acquired_at = NOW}), 'PX', LOCK_TTL)
  redis.call('HSET', RUN, 'fence', token)
  return nil
end

local function release_lock(run_id, fence)
  if LOCK_TTL == '' then return end
  local cur = redis.call('GET', LOCK)
  if cur then
    local h = cjson.decode(cur)
    if h.owner == run_id and tostring(h.token) == fence then redis.call('DEL', LOCK) end
  end
end

local function end_run(run_id, fence, status, err)
  for _, step in ipairs(cjson.decode(redis.call('HGET', RUN, 'plan') or '[]')) do
    redis.call('ZREM', LEASES, run_id .. '|' .. step[1] .. '|' .. step[2] .. '|')
  end
  redis.call('HSET', RUN, 'status', status, 'finished', NOW)
  if err ~= '' then redis.call('HSET', RUN, 'error', err) else redis.call('HDEL', RUN, 'error') end
  redis.call('SREM', ACTIVE, run_id)
  release_lock(run_id, fence)
  event('', '', status, 0, err)
end

local function fail_phase(run_id, fence, attempts, message)
  redis.call('HSET', PHASES, P .. 'status', 'failed', P .. 'finished', NOW, P .. 'last_error', message)
  redis.call('HDEL', PHASES, P .. 'owner', P .. 'lease', P .. 'delayed')
  event(NODE, PATH, 'failed', attempts, message)
  end_run(run_id, fence, 'failed', 'node ' .. NODE .. ' phase ' .. PATH .. ': ' .. message)
end

-- Another run holds the cluster lock: this run's progress writes are refused, and the run ends
-- failed saying who took over (its phase too, when the caller was running one).
local function superseded(run_id, fence, holder, attempts, running)
  local h = cjson.decode(holder)
  local message = 'superseded: run ' .. h.owner .. ' holds the cluster lock now (lock token ' ..
    tostring(h.token) .. ')'
  if running then fail_phase(run_id, fence, attempts, message) else end_run(run_id, fence, 'failed', message) end
  return {'failed', message}
end
"""

# ARGV 6 owner, 7 worker, 8 max attempts, 9 lease ms, 10 successor's field prefix ('' = the finish task).
CLAIM = PRELUDE + """
local run_id, run_status, fence = load_run()
if not run_id then return redis.error_reply('no such run: ' .. RUN) end
if run_status == 'succeeded' or run_status == 'failed' then return {'ignore', 'run ' .. run_status} end
local f = redis.call('HMGET', PHASES, P .. 'status', P .. 'attempts', P .. 'owner', P .. 'lease', P .. 'tries',
  P .. 'last_error', P .. 'pred')
local status, attempts = f[1] or 'pending', tonumber(f[2] or '0')
local now, lease = clock_ms(), tonumber(f[4] or '0')
local held = f[3] and f[3] ~= ARGV[6] and lease > now
if status == 'succeeded' or status == 'skipped' then
  if ARGV[10] ~= '' and (redis.call('HGET', PHASES, ARGV[10] .. 'status') or 'pending') ~= 'pending' then
    return {'ignore', 'phase ' .. status}
  end
  if held then return {'defer', tostring(lease - now)} end
  local holder = hold_lock(run_id, fence)
  if holder then return superseded(run_id, fence, holder, attempts, false) end
  redis.call('HSET', PHASES, P .. 'owner', ARGV[6], P .. 'lease', now + tonumber(ARGV[9]))
  index(run_id, now + tonumber(ARGV[9]))
  return {'send', tostring(attempts)}
end
if held then return {'defer', tostring(lease - now)} end
local holder = hold_lock(run_id, fence)
if holder then return superseded(run_id, fence, holder, attempts, true) end
local tries = tonumber(f[5] or '0')
if status == 'failed' then tries = 0 end
if tries >= tonumber(ARGV[8]) then
  local message = 'giving up after ' .. tries .. ' attempts'
  if f[6] then message = message .. ': ' .. f[6] end
  fail_phase(run_id, fence, attempts, message)
  return {'failed', message}
end
attempts = redis.call('HINCRBY', PHASES, P .. 'attempts', 1)
redis.call('HSET', PHASES, P .. 'status', 'running', P .. 'tries', tries + 1, P .. 'worker', ARGV[7],
  P .. 'started', NOW, P .. 'owner', ARGV[6], P .. 'lease', now + tonumber(ARGV[9]))
redis.call('HDEL', PHASES, P .. 'finished', P .. 'delayed')
index(run_id, now + tonumber(ARGV[9]))
-- This phase starting means its predecessor's successor was delivered: that entry has served.
if f[7] then
  redis.call('ZREM', LEASES, f[7])
  redis.call('HDEL', PHASES, P .. 'pred')
end
if run_status == 'pending' then redis.call('HSET', RUN, 'status', 'running', 'started', NOW) end
event(NODE, PATH, 'started', attempts, '')
return {'run', tostring(attempts)}
"""

# The calling copy's own phase, checked: run still going, lease still the caller's, lock still the run's.
_OWN = """
local run_id, run_status, fence = load_run()
if not run_id then return redis.error_reply('no such run: ' .. RUN) end
if run_status == 'succeeded' or run_status == 'failed' then return {'ignore', 'run ' .. run_status} end
local f = redis.call('HMGET', PHASES, P .. 'owner', P .. 'attempts')
local attempts = tonumber(f[2] or '0')
if f[1] ~= ARGV[6] then return {'ignore', 'lease lost'} end
local holder = hold_lock(run_id, fence)
if holder then return superseded(run_id, fence, holder, attempts, true) end
"""

# ARGV 6 owner, 7 grace ms: the lease is kept that long so that a duplicate does not resend the
# successor while this copy is still sending it; 8 the successor's field prefix ('' = the finish task),
# told which index entry to clear when it starts.
COMPLETE = PRELUDE + _OWN + """
local until_ms = clock_ms() + tonumber(ARGV[7])
redis.call('HSET', PHASES, P .. 'status', 'succeeded', P .. 'finished', NOW, P .. 'lease', until_ms)
redis.call('HDEL', PHASES, P .. 'delayed')
index(run_id, until_ms)
if ARGV[8] ~= '' then redis.call('HSET', PHASES, ARGV[8] .. 'pred', run_id .. '|' .. P) end
event(NODE, PATH, 'succeeded', attempts, '')
return {'ok', tostring(attempts)}
"""

# ARGV 6 owner, 7 message, 8 when the next attempt is due (ISO 8601), 9 ms by which it must have started.
RETRY = PRELUDE + _OWN + """
local until_ms = clock_ms() + tonumber(ARGV[9])
redis.call('HSET', PHASES, P .. 'status', 'retrying', P .. 'last_error', ARGV[7], P .. 'delayed', ARGV[8],
  P .. 'lease', until_ms)
redis.call('HDEL', PHASES, P .. 'owner')
index(run_id, until_ms)
event(NODE, PATH, 'retry', attempts, ARGV[7])
return {'ok', tostring(attempts)}
"""

# ARGV 6 owner ('' = whoever holds the lease: the worker's main process after the hard time limit
# killed the copy that held it), 7 message. Failing needs no lock check: it only stops the run.
FAIL = PRELUDE + """
local run_id, run_status, fence = load_run()
if not run_id then return redis.error_reply('no such run: ' .. RUN) end
if run_status == 'succeeded' or run_status == 'failed' then return {'ignore', 'run ' .. run_status} end
local f = redis.call('HMGET', PHASES, P .. 'owner', P .. 'attempts')
if ARGV[6] ~= '' and f[1] ~= ARGV[6] then return {'ignore', 'lease lost'} end
fail_phase(run_id, fence, tonumber(f[2] or '0'), ARGV[7])
return {'failed', ARGV[7]}
"""

# ARGV 6 owner, 7 lease ms. Returns 1 if the caller still held the lease (now extended), else 0.
RENEW = PRELUDE + """
if redis.call('HGET', PHASES, P .. 'owner') ~= ARGV[6] then return 0 end
local until_ms = clock_ms() + tonumber(ARGV[7])
redis.call('HSET', PHASES, P .. 'lease', until_ms)
index(redis.call('HGET', RUN, 'id'), until_ms)
return 1
"""

# ARGV 6 reason. A phase left out when the run was planned.
SKIP = PRELUDE + """
if redis.call('EXISTS', RUN) == 0 then return redis.error_reply('no such run: ' .. RUN) end
local status = redis.call('HGET', PHASES, P .. 'status')
if status == 'succeeded' or status == 'skipped' then return {'ignore', 'phase ' .. status} end
redis.call('HSET', PHASES, P .. 'status', 'skipped', P .. 'finished', NOW, P .. 'last_error', ARGV[6])
event(NODE, PATH, 'skipped', 0, ARGV[6])
return {'ok', '0'}
"""

# The last link of a run's chain (node and path ''): succeeded only if every planned phase is done.
FINISH = PRELUDE + """
local run_id, run_status, fence = load_run()
if not run_id then return redis.error_reply('no such run: ' .. RUN) end
if run_status == 'succeeded' or run_status == 'failed' then return {'ignore', 'run ' .. run_status} end
local missing = {}
for _, step in ipairs(cjson.decode(redis.call('HGET', RUN, 'plan') or '[]')) do
  local s = redis.call('HGET', PHASES, step[1] .. '|' .. step[2] .. '|status')
  if s ~= 'succeeded' and s ~= 'skipped' then table.insert(missing, step[1] .. ' ' .. step[2]) end
end
if #missing > 0 then
  local message = 'the run reached its end with phases not done: ' .. table.concat(missing, ', ')
  end_run(run_id, fence, 'failed', message)
  return {'failed', message}
end
local holder = hold_lock(run_id, fence)
if holder then return superseded(run_id, fence, holder, 0, false) end
end_run(run_id, fence, 'succeeded', '')
return {'ok', '0'}
"""

# ARGV 6 status (succeeded | failed), 7 error. Ends a run from outside its chain (a submit that failed
# half-way); the lock is released if the run still holds it.
END = PRELUDE + """
local run_id, run_status, fence = load_run()
if not run_id then return redis.error_reply('no such run: ' .. RUN) end
if run_status == 'succeeded' or run_status == 'failed' then return {'ignore', 'run ' .. run_status} end
end_run(run_id, fence, ARGV[6], ARGV[7])
return {'ok', '0'}
"""

# Resume: exactly one caller moves a failed run back to running and takes its cluster lock (with a
# new fencing token); every other caller is refused. Replies {'refused', status} or {'held', lock JSON}.
REOPEN = PRELUDE + """
local run_id, run_status, fence = load_run()
if not run_id then return redis.error_reply('no such run: ' .. RUN) end
if run_status ~= 'failed' then return {'refused', run_status} end
local holder = hold_lock(run_id, fence)
if holder then return {'held', holder} end
redis.call('HSET', RUN, 'status', 'running')
redis.call('HDEL', RUN, 'finished', 'error')
redis.call('SADD', ACTIVE, run_id)
event('', '', 'resumed', 0, '')
return {'ok', '0'}
"""

# The lease index on its own. KEYS: lease index. ARGV: member, score seen, new score. 1 if it moved it.
POSTPONE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""
