"""The Redis store's scripts for delayed and unique jobs (``adapter.store.scheduling``).

Keys, under the store's prefix: ``{p}:idx:due``, a sorted set of the due-marked jobs scored by
``ready_at`` (microseconds); ``{p}:uniq:{queue}:{key}``, a string naming the waiting job that
holds ``key`` in ``queue`` (queue names have no ``:``). Both are kept in step with each job's
state by the shared ``place`` function (``adapter.store.redis.scripts``): a new job with
``ready_at`` is marked, a job leaving PENDING/RETRYING is unmarked and frees its key.
"""

from __future__ import annotations

from redis import Redis
from redis.commands.core import Script

from adapter.store.redis.scripts import _AS_JSON, _COMMON

#: ARGV: prefix, now, limit. Takes the marks of the due jobs, earliest first; returns a JSON
#: array of the fields of those still waiting (a cancelled job's mark is dropped).
TAKE_DUE = """
local p, now, limit = ARGV[1], ARGV[2], ARGV[3]
local due = p .. ':idx:due'
local ids = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, limit)
local taken = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', due, id)
  local key = p .. ':job:' .. id
  if unsettled(key) and WAITING[redis.call('HGET', key, 'state')] then
    taken[#taken + 1] = id
  end
end
return as_json(p, taken)
"""

#: ARGV: prefix, id, ready_at, now. Sets a waiting job's ready_at and marks it due then;
#: returns a JSON array with its fields, empty when it is not waiting.
MARK_DUE = """
local p, id, ready_at, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = p .. ':job:' .. id
if not unsettled(key) or not WAITING[redis.call('HGET', key, 'state')] then
  return '[]'
end
redis.call('HSET', key, 'ready_at', ready_at, 'updated_at', now)
redis.call('ZADD', p .. ':idx:due', ready_at, id)
redis.call('PUBLISH', p .. ':changed', id)
return as_json(p, {id})
"""

#: ARGV: prefix, id, queue, unique key, '1' to replace, data, ready_at or '', now, then the
#: new job's field/value pairs. Returns JSON ``[1]`` when it stored the new job, ``[0, [the
#: waiting job's fields]]`` when a waiting job holds the key, ``[-1]`` when the id is taken.
ADD_UNIQUE = """
local p, id, queue, ukey = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local replace, data, ready_at, now = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local holder = unique_key(p, queue, ukey)
local held = redis.call('GET', holder)
if held then
  local key = p .. ':job:' .. held
  if unsettled(key) and WAITING[redis.call('HGET', key, 'state')] then
    if replace == '1' then
      redis.call('HSET', key, 'data', data, 'updated_at', now)
      if ready_at ~= '' then
        redis.call('HSET', key, 'ready_at', ready_at)
        redis.call('ZADD', p .. ':idx:due', ready_at, held)
      end
      redis.call('PUBLISH', p .. ':changed', held)
    end
    return '[0, ' .. as_json(p, {held}) .. ']'
  end
end
if redis.call('EXISTS', p .. ':job:' .. id) == 1 then
  return '[-1]'
end
add(p, id, argv_from(9))
redis.call('SET', holder, id)
return '[1]'
"""


class DueScripts:
    """The scheduling scripts registered on one client."""

    def __init__(self, client: Redis) -> None:
        common = _COMMON + _AS_JSON
        self.take_due: Script = client.register_script(common + TAKE_DUE)
        self.mark_due: Script = client.register_script(common + MARK_DUE)
        self.add_unique: Script = client.register_script(common + ADD_UNIQUE)
