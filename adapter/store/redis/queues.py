"""Queue controls of the Redis job store, under the job store's prefix.

Keys: ``{prefix}:queue:<name>`` a hash (``paused`` 0/1, ``concurrency``, ``rate_limit`` and,
derived from it, ``rate_count`` and ``rate_counted_us``); ``{prefix}:queue:<name>:slots`` a
hash job id -> admission time (microseconds); ``{prefix}:queue:<name>:starts`` a sorted set of
recent starts scored by time; ``{prefix}:queue-controls`` the set of queue names with stored
controls. ``admit`` is one Lua script (``_ADMIT``, which mirrors ``adapter.control.decide``);
a slot's liveness reads the job's hash (``state``, ``updated_at``, ``settled_at``).
"""

from __future__ import annotations

import weakref
from datetime import datetime
from typing import Any

import redis
from redis.commands.core import Script

from adapter.control import (
    CLAIM_GRACE_S,
    CONCURRENCY_RECHECK_S,
    PAUSED_RECHECK_S,
    Admission,
    QueueControl,
    wait,
)
from adapter.store.queues import ControlChange, QueueStore
from adapter.store.redis.layout import micros
from adapter.store.redis.store import RedisJobStore

#: ARGV: prefix, queue name, job id, now (us), alive since (us). Returns {run, wait_us, holds,
#: reason, counts_start}: the rules of ``adapter.control.decide`` (waits before their jitter).
_ADMIT = """
local p, queue, job = ARGV[1], ARGV[2], ARGV[3]
local now, alive = tonumber(ARGV[4]), tonumber(ARGV[5])
local qkey = p .. ':queue:' .. queue
local c = redis.call('HMGET', qkey, 'paused', 'concurrency', 'rate_count', 'rate_counted_us')
if c[1] == '1' then
  return {0, __PAUSED_US__, 0, 'paused'}
end
local conc, rcount, rcounted = tonumber(c[2]), tonumber(c[3]), tonumber(c[4])
local starts = qkey .. ':starts'
if rcount then
  redis.call('ZREMRANGEBYSCORE', starts, '-inf', now - rcounted)
  local n = redis.call('ZCARD', starts)
  if n >= rcount then
    local oldest = redis.call('ZRANGE', starts, n - rcount, n - rcount, 'WITHSCORES')
    return {0, tonumber(oldest[2]) + rcounted - now, 0, 'rate limit'}
  end
end
local slots = qkey .. ':slots'
local has = false
if conc then
  local held = redis.call('HGETALL', slots)
  local live = 0
  for i = 1, #held, 2 do
    local id, at = held[i], tonumber(held[i + 1])
    local f = redis.call('HMGET', p .. ':job:' .. id, 'state', 'updated_at', 'settled_at')
    local ok
    local claiming = at >= now - __CLAIM_GRACE_US__
    if not f[1] then
      ok = claiming
    elseif f[3] then
      ok = false
    else
      ok = (f[1] == 'RUNNING' and tonumber(f[2]) >= alive) or claiming
    end
    if not ok then
      redis.call('HDEL', slots, id)
    elseif id == job then
      has = true
    else
      live = live + 1
    end
  end
  if not has and live >= conc then
    return {0, __CONCURRENCY_US__, 0, 'concurrency'}
  end
end
if rcount then
  redis.call('ZADD', starts, ARGV[4], job .. '@' .. ARGV[4])
  redis.call('PEXPIRE', starts, math.floor(rcounted / 1000) + 1000)
end
if conc and not has then
  redis.call('HSET', slots, job, now)
  return {1, 0, 1, '', rcount and 1 or 0}
end
return {1, 0, 0, '', rcount and 1 or 0}
"""

_scripts: weakref.WeakKeyDictionary[redis.Redis, Script] = weakref.WeakKeyDictionary()


class RedisQueueStore(QueueStore):
    """Queue controls in Redis, beside a ``RedisJobStore`` (its client and prefix)."""

    def __init__(self, jobs: RedisJobStore) -> None:
        self._jobs = jobs
        self._prefix = jobs.keys.prefix

    def _key(self, queue_name: str) -> str:
        return f"{self._prefix}:queue:{queue_name}"

    @property
    def _index(self) -> str:
        return f"{self._prefix}:queue-controls"

    def control(self, queue_name: str) -> QueueControl:
        with self._jobs._talking() as (client, _):
            return _control(_texts(client.hgetall(self._key(queue_name))))

    def controls(self) -> dict[str, QueueControl]:
        with self._jobs._talking() as (client, _):
            names = sorted(str(name) for name in client.smembers(self._index))
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(self._key(name))
            found = {
                name: _control(_texts(fields))
                for name, fields in zip(names, pipe.execute(), strict=False)
            }
        return {name: control for name, control in found.items() if not control.is_default}

    def _update(self, queue_name: str, change: ControlChange) -> QueueControl:
        key = self._key(queue_name)
        written: list[QueueControl] = []

        def write(pipe: redis.client.Pipeline) -> None:
            new = change(_control(_texts(pipe.hgetall(key))))
            pipe.multi()
            pipe.delete(key)
            for name, value in _fields(new).items():
                pipe.hset(key, name, value)
            pipe.sadd(self._index, queue_name)
            written[:] = [new]

        with self._jobs._talking() as (client, _):
            client.transaction(write, key)
        return written[0]

    def admit(
        self, queue_name: str, job_id: str, now: datetime, alive_since: datetime
    ) -> Admission:
        args: list[str | int] = [self._prefix, queue_name, job_id, micros(now), micros(alive_since)]
        with self._jobs._talking() as (client, _):
            script = _scripts.get(client)
            if script is None:
                script = _scripts[client] = client.register_script(_admit_lua())
            run, wait_us, holds, reason, *counted = script(args=args)
        if run:
            return Admission(run=True, holds_slot=bool(holds), counts_start=bool(counted[0]))
        return wait(int(wait_us) / 1e6, str(reason))

    def started(
        self, queue_name: str, job_id: str, admitted_at: datetime, started_at: datetime
    ) -> None:
        member = f"{job_id}@{micros(admitted_at)}"
        with self._jobs._talking() as (client, _):
            client.zadd(f"{self._key(queue_name)}:starts", {member: micros(started_at)}, xx=True)

    def release(self, queue_name: str, job_id: str) -> None:
        with self._jobs._talking() as (client, _):
            client.hdel(f"{self._key(queue_name)}:slots", job_id)


def _admit_lua() -> str:
    values = {
        "__PAUSED_US__": PAUSED_RECHECK_S,
        "__CONCURRENCY_US__": CONCURRENCY_RECHECK_S,
        "__CLAIM_GRACE_US__": CLAIM_GRACE_S,
    }
    lua = _ADMIT
    for name, seconds in values.items():
        lua = lua.replace(name, str(int(seconds * 1e6)))
    return lua


def _texts(fields: Any) -> dict[str, str]:
    """The hash as text (the client decodes replies)."""
    return {str(name): str(value) for name, value in fields.items()}


def _control(fields: dict[str, str]) -> QueueControl:
    concurrency = fields.get("concurrency")
    return QueueControl(
        paused=fields.get("paused") == "1",
        concurrency=int(concurrency) if concurrency else None,
        rate_limit=fields.get("rate_limit") or None,
    )


def _fields(control: QueueControl) -> dict[str, str]:
    fields = {"paused": "1" if control.paused else "0"}
    if control.concurrency is not None:
        fields["concurrency"] = str(control.concurrency)
    rate = control.rate
    if rate is not None and control.rate_limit is not None:
        fields["rate_limit"] = control.rate_limit
        fields["rate_count"] = str(rate.count)
        fields["rate_counted_us"] = str(int(rate.counted_s * 1e6))
    return fields
