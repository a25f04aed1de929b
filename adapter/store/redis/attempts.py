"""The Redis store's scripts for an attempt's writes: claims and outcomes, of one job or many.

Each script body runs after ``_COMMON`` (``adapter.store.redis.scripts``: ``add``, ``place``,
``unsettled``, ``transit``). ``claim_one`` and ``update_one`` are written once; the ``*_MANY``
scripts loop over them, so a batch of jobs costs one round trip and each job still changes
atomically, with the settled guard, exactly as the one-job script changes it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyWrite:
    """A value set under ``key`` (for ``expires_s`` seconds, or for ever) and published on the
    channel of that name: a write ``RedisJobStore.update_and_set`` makes beside an outcome."""

    key: str
    value: str | bytes
    expires_s: int | None = None


#: Lua: claim job ``id`` (START, with ``busy_after``) for a message of ``queue``. ``fields``:
#: the job's field/value pairs to record it from when it is missing, or nil. Returns
#: ``{-1, {}}`` when it is missing and ``fields`` is nil (nothing changed), ``{-2, stored queue}``
#: for a job of another queue (left as it is), else ``{1 if it was recorded else 0, the job's
#: fields after the claim (``data`` as stored: a message cannot run other data), or {} when
#: the transition did not apply (settled, RUNNING with a beat at or after busy_after, or
#: waiting with a ``ready_at`` still ahead: then indexed as due, for the promoter)}``.
_CLAIM_ONE = """
local function claim_one(p, id, now, spec, busy_after, queue, fields)
  local key = p .. ':job:' .. id
  local recorded = 0
  local stored_queue = redis.call('HGET', key, 'queue_name')
  if not stored_queue then
    if not fields then
      return {-1, {}}
    end
    add(p, id, fields)
    recorded = 1
  elseif stored_queue ~= queue then
    return {-2, stored_queue}
  end
  local early = redis.call('HMGET', key, 'ready_at', 'state')
  if early[1] and tonumber(early[1]) > tonumber(now) and WAITING[early[2]] then
    redis.call('ZADD', p .. ':idx:due', early[1], id)  -- not ready: the promoter publishes it
    return {recorded, {}}
  end
  if not transit(p, id, spec, now, busy_after, {}) then
    return {recorded, {}}
  end
  local flat = redis.call('HGETALL', key)
  local found = {}
  for k = 1, #flat, 2 do
    found[flat[k]] = flat[k + 1]
  end
  return {recorded, found}
end
"""

#: Lua: write the fields ``set`` (name to value) and delete those of ``unset`` of job ``id``
#: unless it is missing or settled. Returns 1, or 0 when nothing was written.
_UPDATE_ONE = """
local function update_one(p, id, set, unset)
  local key = p .. ':job:' .. id
  if not unsettled(key) then
    return 0
  end
  local old = redis.call('HGET', key, 'state')
  local pairs_ = {}
  for name, value in pairs(set) do
    pairs_[#pairs_ + 1] = name
    pairs_[#pairs_ + 1] = value
  end
  redis.call('HSET', key, unpack(pairs_))
  if #unset > 0 then
    redis.call('HDEL', key, unpack(unset))
  end
  place(p, id, old)
  redis.call('PUBLISH', p .. ':changed', id)
  return 1
end
"""

#: ARGV: prefix, id, now, the START transition's spec, busy_after (or ''), the queue name the
#: message names, then the job's field/value pairs, or none (the caller sends them only after
#: a ``-1``: a job is nearly always stored already). Returns ``claim_one``'s answer as JSON:
#: one string is far cheaper for the client to read than a list of fields.
CLAIM = (
    _CLAIM_ONE
    + """
local fields = nil
if #ARGV >= 7 then
  fields = {unpack(ARGV, 7)}
end
return cjson.encode(claim_one(ARGV[1], ARGV[2], ARGV[3], cjson.decode(ARGV[4]),
  tonumber(ARGV[5]) or math.huge, ARGV[6], fields))
"""
)

#: ARGV: prefix, now, the START transition's spec, busy_after (or ''), then a JSON array of
#: ``[id, queue name]`` or ``[id, queue name, {field: value, ...}]`` (to record a missing job
#: from), one per job. Returns a JSON array of ``claim_one``'s answers, in that order.
CLAIM_MANY = (
    _CLAIM_ONE
    + """
local p, now, spec = ARGV[1], ARGV[2], cjson.decode(ARGV[3])
local busy_after = tonumber(ARGV[4]) or math.huge
local answers = {}
for i, job in ipairs(cjson.decode(ARGV[5])) do
  local fields = nil
  if job[3] then
    fields = {}
    for name, value in pairs(job[3]) do
      fields[#fields + 1] = name
      fields[#fields + 1] = value
    end
  end
  answers[i] = claim_one(p, job[1], now, spec, busy_after, job[2], fields)
end
return cjson.encode(answers)
"""
)

#: ARGV: prefix, id, a JSON object of the fields to set, a JSON array of the fields to delete
#: (two strings instead of twenty arguments: cheaper for the client); optionally a key, a value
#: and its expiry in seconds (or ''): once the job is written, the value is set there and
#: published on the channel of that name, as Celery's Redis result backend writes a result.
#: Returns 1, or 0 when the job is missing or settled (then nothing is written).
UPDATE = (
    _UPDATE_ONE
    + """
local done = update_one(ARGV[1], ARGV[2], cjson.decode(ARGV[3]), cjson.decode(ARGV[4]))
if done == 1 and ARGV[5] then
  if ARGV[7] ~= '' then
    redis.call('SETEX', ARGV[5], ARGV[7], ARGV[6])
  else
    redis.call('SET', ARGV[5], ARGV[6])
  end
  redis.call('PUBLISH', ARGV[5], ARGV[6])
end
return done
"""
)

#: ARGV: prefix, then a JSON array of ``[id, {field: value}, [field, ...]]``, one per job.
#: Returns ``update_one``'s answers (1 or 0), in that order.
UPDATE_MANY = (
    _UPDATE_ONE
    + """
local answers = {}
for i, job in ipairs(cjson.decode(ARGV[2])) do
  answers[i] = update_one(ARGV[1], job[1], job[2], job[3])
end
return answers
"""
)
