"""The Redis job store's Lua scripts: every write that changes a job, atomic and guarded.

Each script keeps a job's hash and its index entries in step (the key layout is in
``adapter.store.redis.store`` and ``adapter.store.redis.layout``). The guard of the SQL store,
``settled_at IS NULL``, is ``HEXISTS settled_at == 0`` here: a settled job is never overwritten.
Scripts build key names from the prefix, so they run on one Redis server (not Redis Cluster).
"""

from __future__ import annotations

from redis import Redis
from redis.commands.core import Script

from adapter.job import SETTLED_STATES
from adapter.store.redis.attempts import CLAIM, CLAIM_MANY, UPDATE, UPDATE_MANY
from adapter.store.scheduling import WAITING_STATES

#: Read jobs for the client: one JSON text is parsed far faster than a reply per field.
_AS_JSON = """
-- ARGV from `first` on, as a table (`unpack` of a long ARGV overflows Lua's stack).
local function argv_from(first)
  local rest = {}
  for i = first, #ARGV do
    rest[#rest + 1] = ARGV[i]
  end
  return rest
end

-- Return a JSON array of the fields of the jobs `ids` that exist, in that order.
local function as_json(p, ids)
  local found = {}
  for _, id in ipairs(ids) do
    local flat = redis.call('HGETALL', p .. ':job:' .. id)
    if #flat > 0 then
      local fields = {}
      for k = 1, #flat, 2 do
        fields[flat[k]] = flat[k + 1]
      end
      found[#found + 1] = fields
    end
  end
  if #found == 0 then
    return '[]'
  end
  return cjson.encode(found)
end
"""

#: Functions every script shares: put a job into its indexes, take it out of them.
_COMMON = """
local FINAL = {__SETTLED_STATES__}
local WAITING = {__WAITING_STATES__}

-- The key naming the waiting job that holds unique key `ukey` of `queue`.
local function unique_key(p, queue, ukey)
  return p .. ':uniq:' .. queue .. ':' .. ukey
end

-- A job leaving the waiting states: unmarked, and its unique key freed. (A new job is
-- marked and holds its key from `add_to_batch`.)
local function schedule(p, id, old, queue, state)
  if WAITING[old] and not WAITING[state] then
    local ukey = redis.call('HGET', p .. ':job:' .. id, 'unique_key')
    redis.call('ZREM', p .. ':idx:due', id)
    if ukey and redis.call('GET', unique_key(p, queue, ukey)) == id then
      redis.call('DEL', unique_key(p, queue, ukey))
    end
  end
end

-- Index job `id` by its hash now; `old` is the state it is indexed under (a new job is
-- indexed by `add_to_batch`). Only a job that is or was settled (FINAL) can be in the
-- settled and unstamped indexes.
local function place(p, id, old)
  local f = redis.call('HMGET', p .. ':job:' .. id, 'queue_name', 'state', 'created_at',
    'settled_at')
  local queue, state, created, settled = f[1], f[2], f[3], f[4]
  schedule(p, id, old, queue, state)
  if old ~= state then
    if old then  -- false for a hash without a state
      redis.call('ZREM', p .. ':idx:state:' .. old, id)
      redis.call('ZREM', p .. ':idx:state:' .. old .. ':queue:' .. queue, id)
    end
    redis.call('ZADD', p .. ':idx:state:' .. state, created, id)
    redis.call('ZADD', p .. ':idx:state:' .. state .. ':queue:' .. queue, created, id)
  end
  local was_final = old and FINAL[old]
  if FINAL[state] and settled then
    redis.call('ZADD', p .. ':idx:settled', settled, id)
    redis.call('ZADD', p .. ':idx:settled:queue:' .. queue, settled, id)
    if was_final then
      redis.call('SREM', p .. ':idx:unstamped', id)
    end
  elseif FINAL[state] or was_final then
    redis.call('ZREM', p .. ':idx:settled', id)
    redis.call('ZREM', p .. ':idx:settled:queue:' .. queue, id)
    if FINAL[state] then
      redis.call('SADD', p .. ':idx:unstamped', id)
    else
      redis.call('SREM', p .. ':idx:unstamped', id)
    end
  end
end

-- New jobs' index entries, gathered so that a batch costs one ZADD per index and one SADD.
local function new_batch()
  return {zsets = {}, queues = {}}
end

local function gather(batch, key, score, id)
  local members = batch.zsets[key]
  if not members then
    members = {}
    batch.zsets[key] = members
  end
  members[#members + 1] = score
  members[#members + 1] = id
end

-- Write what `batch` gathered.
local function write_batch(p, batch)
  for key, members in pairs(batch.zsets) do
    for first = 1, #members, 7000 do  -- unpack's limit is 8000 values (LUAI_MAXCSTACK)
      redis.call('ZADD', key, unpack(members, first, math.min(first + 6999, #members)))
    end
  end
  local queues = {}
  for queue, _ in pairs(batch.queues) do
    queues[#queues + 1] = queue
  end
  if #queues > 0 then
    redis.call('SADD', p .. ':queues', unpack(queues))
  end
end

-- Store new job `id` from `f` (field name -> value) and gather its index entries in `batch`:
-- the entries `place` gives a job indexed under no state yet (`schedule` included).
local function add_to_batch(p, id, f, batch)
  local fields = {}
  for name, value in pairs(f) do
    fields[#fields + 1] = name
    fields[#fields + 1] = value
  end
  redis.call('HSET', p .. ':job:' .. id, unpack(fields))
  local queue, state, created, settled = f.queue_name, f.state, f.created_at, f.settled_at
  batch.queues[queue] = true
  gather(batch, p .. ':idx:all', created, id)
  gather(batch, p .. ':idx:queue:' .. queue, created, id)
  gather(batch, p .. ':idx:state:' .. state, created, id)
  gather(batch, p .. ':idx:state:' .. state .. ':queue:' .. queue, created, id)
  if WAITING[state] then
    if f.ready_at then
      gather(batch, p .. ':idx:due', f.ready_at, id)
    end
    if f.unique_key then
      redis.call('SET', unique_key(p, queue, f.unique_key), id, 'NX')
    end
  end
  if FINAL[state] and settled then
    gather(batch, p .. ':idx:settled', settled, id)
    gather(batch, p .. ':idx:settled:queue:' .. queue, settled, id)
  elseif FINAL[state] then
    redis.call('ZREM', p .. ':idx:settled', id)
    redis.call('ZREM', p .. ':idx:settled:queue:' .. queue, id)
    redis.call('SADD', p .. ':idx:unstamped', id)
  end
end

-- Store a new job from the flat list of its field/value pairs `fields` and index it.
local function add(p, id, fields)
  local f = {}
  for i = 1, #fields, 2 do
    f[fields[i]] = fields[i + 1]
  end
  local batch = new_batch()
  add_to_batch(p, id, f, batch)
  write_batch(p, batch)
end

-- Delete job `id` and every index entry of it; forget its queue once that has no jobs.
local function remove(p, id)
  local key = p .. ':job:' .. id
  local f = redis.call('HMGET', key, 'queue_name', 'state')
  local queue, state = f[1], f[2]
  if queue then
    schedule(p, id, state, queue, 'DELETED')
  end
  redis.call('DEL', key)
  redis.call('ZREM', p .. ':idx:due', id)
  redis.call('ZREM', p .. ':idx:all', id)
  redis.call('ZREM', p .. ':idx:settled', id)
  redis.call('SREM', p .. ':idx:unstamped', id)
  if not queue then
    return 0
  end
  redis.call('ZREM', p .. ':idx:queue:' .. queue, id)
  redis.call('ZREM', p .. ':idx:settled:queue:' .. queue, id)
  redis.call('ZREM', p .. ':idx:state:' .. state, id)
  redis.call('ZREM', p .. ':idx:state:' .. state .. ':queue:' .. queue, id)
  if redis.call('ZCARD', p .. ':idx:queue:' .. queue) == 0 then
    redis.call('SREM', p .. ':queues', queue)
  end
  return 1
end

local function unsettled(key)
  return redis.call('EXISTS', key) == 1 and redis.call('HEXISTS', key, 'settled_at') == 0
end

-- Apply the transition `spec` (``layout.transition_spec``: sources, stale, state, values,
-- stamps, counts) to job `id` if it is unsettled and its state allows it; `given` holds the
-- caller's fields, `stale_before` (or false) the cutoff for the stale sources. True if applied.
local function transit(p, id, spec, now, stale_before, given)
  local key = p .. ':job:' .. id
  if not unsettled(key) then
    return false
  end
  local f = redis.call('HMGET', key, 'state', 'updated_at')
  local old = f[1]
  local allowed = spec.sources[old] ~= nil
  if not allowed and spec.stale[old] ~= nil and stale_before then
    allowed = tonumber(f[2]) < stale_before
  end
  if not allowed then
    return false
  end
  local changes = {'updated_at', now}
  for name, value in pairs(spec.values) do
    changes[#changes + 1] = name
    changes[#changes + 1] = value
  end
  for _, name in ipairs(spec.stamps) do
    changes[#changes + 1] = name
    changes[#changes + 1] = now
  end
  for name, value in pairs(given) do
    changes[#changes + 1] = name
    changes[#changes + 1] = value
  end
  if spec.state then
    changes[#changes + 1] = 'state'
    changes[#changes + 1] = spec.state
  end
  redis.call('HSET', key, unpack(changes))
  if spec.counts then
    redis.call('HINCRBY', key, 'attempts', 1)
  end
  if spec.state then
    place(p, id, old)
  end
  redis.call('PUBLISH', p .. ':changed', id)
  return true
end
"""

# The settled states come from adapter.job, the one place they are defined.
_COMMON = _COMMON.replace(
    "__SETTLED_STATES__", ", ".join(f"{state.value} = true" for state in sorted(SETTLED_STATES))
).replace(
    "__WAITING_STATES__", ", ".join(f"{state.value} = true" for state in sorted(WAITING_STATES))
)

#: ARGV: prefix, id, field, value, ...  Returns 1, or 0 when the id is taken.
INSERT = """
local p, id = ARGV[1], ARGV[2]
if redis.call('EXISTS', p .. ':job:' .. id) == 1 then
  return 0
end
add(p, id, {unpack(ARGV, 3)})
return 1
"""

#: ARGV: prefix, then a JSON array of ``[id, {field: value, ...}]``, one per job. Records each
#: job whose id is free (a stored job is left as it is). Returns how many were recorded.
INSERT_MANY = """
local p = ARGV[1]
local recorded = 0
local batch = new_batch()
for _, job in ipairs(cjson.decode(ARGV[2])) do
  local id = job[1]
  if redis.call('EXISTS', p .. ':job:' .. id) == 0 then
    add_to_batch(p, id, job[2], batch)
    recorded = recorded + 1
  end
end
write_batch(p, batch)
return recorded
"""

#: ARGV: prefix, id, progress, now. Returns 1/0.
SET_PROGRESS = """
local key = ARGV[1] .. ':job:' .. ARGV[2]
if not unsettled(key) then
  return 0
end
redis.call('HSET', key, 'progress', ARGV[3], 'updated_at', ARGV[4])
redis.call('PUBLISH', ARGV[1] .. ':changed', ARGV[2])
return 1
"""

#: ARGV: prefix, now, a transition's spec, stale_before (or ''), a JSON object of its given
#: fields, then the job ids, or none for every job in the transition's source states.
#: Returns a JSON array of the fields of the jobs changed, as stored after the change.
TRANSITION = """
local p, now, spec = ARGV[1], ARGV[2], cjson.decode(ARGV[3])
local stale_before, given = tonumber(ARGV[4]) or false, cjson.decode(ARGV[5])
local ids = argv_from(6)
if #ARGV < 6 then
  for _, states in ipairs({spec.sources, spec.stale}) do
    for state, _ in pairs(states) do
      for _, id in ipairs(redis.call('ZRANGE', p .. ':idx:state:' .. state, 0, -1)) do
        ids[#ids + 1] = id
      end
    end
  end
end
local changed = {}
for _, id in ipairs(ids) do
  if transit(p, id, spec, now, stale_before, given) then
    changed[#changed + 1] = id
  end
end
return as_json(p, changed)
"""

#: ARGV: prefix, id. Returns 1 when the job existed.
DELETE = """
return remove(ARGV[1], ARGV[2])
"""

#: ARGV: prefix, settled index key, cutoff (microseconds, excluded), batch size.
#: Deletes up to one batch of the jobs settled before the cutoff; returns how many.
REMOVE_SETTLED = """
local p = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', ARGV[2], '-inf', '(' .. ARGV[3], 'LIMIT', 0, ARGV[4])
for _, id in ipairs(ids) do
  remove(p, id)
end
return #ids
"""

#: ARGV: prefix, id, ...  Returns a JSON array of the fields of the jobs that exist, in order.
LOAD = """
return as_json(ARGV[1], argv_from(2))
"""

#: KEYS: one sorted set, or several (disjoint) and then a scratch key for their union.
#: ARGV: skip, take, 1 for newest first. Returns {total, {id, score, id, score, ...}}.
#: Ties in score are ordered by id ascending both ways, as ``adapter.listing`` sorts.
PAGE = """
local function newest_first(key, skip, take)
  local raw = redis.call('ZREVRANGE', key, skip, skip + take - 1, 'WITHSCORES')
  local out = {}
  local i = 1
  while i <= #raw do
    local score = raw[i + 1]
    local j = i
    while raw[j + 3] == score do
      j = j + 2
    end
    local members = {}
    if i == 1 or j + 1 == #raw then
      -- this run of equal scores may go on past the page: take its ids from the start
      local offset = 0
      if i == 1 then
        offset = skip - redis.call('ZCOUNT', key, '(' .. score, '+inf')
      end
      members = redis.call('ZRANGEBYSCORE', key, score, score, 'LIMIT', offset, (j - i) / 2 + 1)
    else
      for k = j, i, -2 do
        members[#members + 1] = raw[k]
      end
    end
    for _, member in ipairs(members) do
      out[#out + 1] = member
      out[#out + 1] = score
    end
    i = j + 2
  end
  return out
end

local key, scratch = KEYS[1], nil
if #KEYS > 1 then
  scratch = KEYS[#KEYS]
  redis.call('DEL', scratch)
  for first = 1, #KEYS - 1, 500 do
    local sources = {scratch}
    for k = first, math.min(first + 499, #KEYS - 1) do
      sources[#sources + 1] = KEYS[k]
    end
    redis.call('ZUNIONSTORE', scratch, #sources, unpack(sources))
  end
  key = scratch
end
local skip, take = tonumber(ARGV[1]), tonumber(ARGV[2])
local total = redis.call('ZCARD', key)
local page = {}
if take > 0 and skip < total then
  if ARGV[3] == '1' then
    page = newest_first(key, skip, take)
  else
    page = redis.call('ZRANGE', key, skip, skip + take - 1, 'WITHSCORES')
  end
end
if scratch then
  redis.call('DEL', scratch)
end
return {total, page}
"""


class RedisScripts:
    """The scripts registered on one client; call them as ``scripts.claim(args=[...])``."""

    def __init__(self, client: Redis) -> None:
        """Register every script on ``client`` (loaded into Redis on first use)."""
        self.insert: Script = client.register_script(_COMMON + INSERT)
        self.insert_many: Script = client.register_script(_COMMON + INSERT_MANY)
        self.claim: Script = client.register_script(_COMMON + CLAIM)
        self.update: Script = client.register_script(_COMMON + UPDATE)
        self.claim_many: Script = client.register_script(_COMMON + CLAIM_MANY)
        self.update_many: Script = client.register_script(_COMMON + UPDATE_MANY)
        self.set_progress: Script = client.register_script(_COMMON + SET_PROGRESS)
        self.transition: Script = client.register_script(_COMMON + _AS_JSON + TRANSITION)
        self.delete: Script = client.register_script(_COMMON + DELETE)
        self.remove_settled: Script = client.register_script(_COMMON + REMOVE_SETTLED)
        self.page: Script = client.register_script(PAGE)
        self.load: Script = client.register_script(_AS_JSON + LOAD)
