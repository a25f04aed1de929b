"""Scheduled-task state in Redis, beside the jobs; and retention over the job indexes.

Keys, under the job store's prefix ``p`` (no existing key changes):

==============================  ==============================================================
``{p}:sched:tasks``             set: ids of registered tasks
``{p}:sched:task:{id}``         hash: enabled, last_tick, run_requested_at, lease_owner,
                                lease_until, last_started_at, last_finished_at, last_result,
                                last_error (times as integer microseconds since 1970 UTC)
``{p}:sched:runs:{id}``         list: finished runs as JSON, newest first, capped
==============================  ==============================================================

``claim`` is one Lua script (the compare-and-set on ``last_tick`` and the lease); ``now()`` is
Redis's ``TIME``, one clock for every worker. Retention removes jobs through the
``idx:state:{s}:queue:{q}`` index (scored by ``created_at``) in scripts of ``REMOVE_BATCH``
jobs, each removing a job with every index entry of it, as ``remove_settled`` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from redis import Redis
from redis.commands.core import Script

from adapter.retention import EACH_QUEUE, RetentionRule
from adapter.store.redis.layout import RedisKeys, from_micros, micros
from adapter.store.redis.scripts import _COMMON, RedisScripts
from adapter.store.redis.store import REMOVE_BATCH, _text
from adapter.store.schedules import Claim, RunRecord, ScheduleStore, TaskRecord

Talking = Callable[[], AbstractContextManager[tuple[Redis, RedisScripts]]]

#: KEYS: task hash, set of tasks. ARGV: id, last tick.
_REGISTER = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'enabled', '1', 'last_tick', ARGV[2])
end
redis.call('SADD', KEYS[2], ARGV[1])
"""
#: ARGV: now, lease_until, owner, tick ('' for a requested run), 1 if exclusive.
_CLAIM = """
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return 0 end
local f = redis.call('HMGET', key, 'enabled', 'last_tick', 'run_requested_at', 'lease_owner',
                     'lease_until')
local now, tick = tonumber(ARGV[1]), ARGV[4]
if tick == '' then
  if not f[3] then return 0 end
else
  if f[1] ~= '1' then return 0 end
  if f[2] and tonumber(f[2]) >= tonumber(tick) then return 0 end
end
if ARGV[5] == '1' and f[4] and tonumber(f[5]) >= now then return 0 end
if tick == '' then
  redis.call('HDEL', key, 'run_requested_at')
else
  redis.call('HSET', key, 'last_tick', tick)
end
redis.call('HSET', key, 'lease_owner', ARGV[3], 'lease_until', ARGV[2], 'last_started_at', now)
return 1
"""
#: KEYS: task hash, runs list. ARGV: owner, keep, run JSON, then field, value pairs.
_FINISH = """
if redis.call('HGET', KEYS[1], 'lease_owner') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_until')
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HDEL', KEYS[1], 'last_result', 'last_error')
  for i = 4, #ARGV, 2 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
"""
#: ARGV: prefix, index, keep, batch. Removes up to a batch of the oldest jobs past ``keep``.
_REMOVE_BEYOND = """
local excess = redis.call('ZCARD', ARGV[2]) - tonumber(ARGV[3])
if excess <= 0 then return 0 end
local ids = redis.call('ZRANGE', ARGV[2], 0, math.min(excess, tonumber(ARGV[4])) - 1)
for _, id in ipairs(ids) do
  remove(ARGV[1], id)
end
return #ids
"""
_TIMES = ("last_tick", "run_requested_at", "lease_until", "last_started_at", "last_finished_at")


class RedisScheduleStore(ScheduleStore):
    """Scheduled-task hashes in the job store's Redis."""

    def __init__(self, talking: Talking, keys: RedisKeys) -> None:
        """Reach Redis through the job store's ``talking`` (its client, errors as StoreError)."""
        self._talking = talking
        self._keys = keys
        self._all = f"{keys.prefix}:sched:tasks"

    def _task(self, task_id: str) -> str:
        return f"{self._keys.prefix}:sched:task:{task_id}"

    def _runs(self, task_id: str) -> str:
        return f"{self._keys.prefix}:sched:runs:{task_id}"

    def now(self) -> datetime:
        with self._talking() as (client, _):
            seconds, microseconds = client.time()
        return from_micros(int(seconds) * 1_000_000 + int(microseconds))

    def register(self, task_id: str, last_tick: datetime) -> None:
        with self._talking() as (client, _):
            client.register_script(_REGISTER)(
                keys=[self._task(task_id), self._all], args=[task_id, micros(last_tick)]
            )

    def claim(self, claim: Claim) -> bool:
        args: list[str | int] = [
            micros(claim.now),
            micros(claim.lease_until),
            claim.owner,
            "" if claim.tick is None else micros(claim.tick),
            int(claim.exclusive),
        ]
        with self._talking() as (client, _):
            script = client.register_script(_CLAIM)
            return bool(script(keys=[self._task(claim.task_id)], args=args))

    def renew(self, task_id: str, owner: str, lease_until: datetime) -> bool:
        with self._talking() as (client, _):
            if client.hget(self._task(task_id), "lease_owner") != owner:
                return False
            client.hset(self._task(task_id), "lease_until", micros(lease_until))
            return True

    def finish(self, run: RunRecord, keep: int) -> None:
        fields: list[Any] = [
            "last_started_at",
            micros(run.started_at),
            "last_finished_at",
            micros(run.finished_at),
        ]
        if run.result is not None:
            fields += ["last_result", run.result]
        if run.error is not None:
            fields += ["last_error", run.error]
        entry = json.dumps(
            {
                "tick": None if run.tick is None else micros(run.tick),
                "owner": run.owner,
                "started_at": micros(run.started_at),
                "finished_at": micros(run.finished_at),
                "result": run.result,
                "error": run.error,
            }
        )
        with self._talking() as (client, _):
            client.register_script(_FINISH)(
                keys=[self._task(run.task_id), self._runs(run.task_id)],
                args=[run.owner, keep, entry, *fields],
            )

    def set_enabled(self, task_id: str, enabled: bool) -> bool:
        return self._change(task_id, "enabled", int(enabled))

    def request_run(self, task_id: str, now: datetime) -> bool:
        return self._change(task_id, "run_requested_at", micros(now))

    def _change(self, task_id: str, field: str, value: int) -> bool:
        with self._talking() as (client, _):
            if not client.exists(self._task(task_id)):
                return False
            client.hset(self._task(task_id), field, value)
            return True

    def records(self) -> dict[str, TaskRecord]:
        with self._talking() as (client, _):
            ids = sorted(_text(member) for member in client.smembers(self._all))
            pipe = client.pipeline(transaction=False)
            for task_id in ids:
                pipe.hgetall(self._task(task_id))
            hashes = pipe.execute()
        return {
            task_id: _record(task_id, fields)
            for task_id, fields in zip(ids, hashes, strict=True)
            if fields
        }

    def history(self, task_id: str, take: int = 100) -> list[RunRecord]:
        with self._talking() as (client, _):
            entries = client.lrange(self._runs(task_id), 0, take - 1) if take > 0 else []
        runs = []
        for text in entries:
            entry = json.loads(text)
            tick = entry["tick"]
            runs.append(
                RunRecord(
                    task_id=task_id,
                    tick=None if tick is None else from_micros(tick),
                    owner=entry["owner"],
                    started_at=from_micros(entry["started_at"]),
                    finished_at=from_micros(entry["finished_at"]),
                    result=entry["result"],
                    error=entry["error"],
                )
            )
        return runs

    def apply_retention(self, rule: RetentionRule, now: datetime) -> int:
        removed = 0
        with self._talking() as (client, scripts):
            queues = (
                sorted(_text(member) for member in client.smembers(self._keys.queues))
                if rule.queue_name == EACH_QUEUE
                else [rule.queue_name]
            )
            remove_beyond = client.register_script(_COMMON + _REMOVE_BEYOND)
            for queue in queues:
                index = self._keys.state_queue(rule.state.value, queue)
                if rule.keep is not None:
                    keep_args: list[str | int] = [self._keys.prefix, index, rule.keep, REMOVE_BATCH]
                    removed += _repeat(remove_beyond, keep_args)
                if rule.max_age is not None:
                    age_args: list[str | int] = [
                        self._keys.prefix,
                        index,
                        micros(now - rule.max_age),
                        REMOVE_BATCH,
                    ]
                    removed += _repeat(scripts.remove_settled, age_args)
        return removed


def _repeat(script: Script, args: list[str | int]) -> int:
    """Run ``script`` until it removes less than a full batch; return the total."""
    total = 0
    while True:
        count = int(script(args=args))
        total += count
        if count < REMOVE_BATCH:
            return total


def _record(task_id: str, fields: dict[str, str]) -> TaskRecord:
    times = {name: from_micros(fields[name]) if name in fields else None for name in _TIMES}
    return TaskRecord(
        task_id=task_id,
        enabled=fields.get("enabled") == "1",
        lease_owner=fields.get("lease_owner"),
        last_result=fields.get("last_result"),
        last_error=fields.get("last_error"),
        **times,
    )
