"""The scheduler: every worker runs one; each tick of each task runs once among all of them.

Driven by the workers, as Vendure's scheduler is (no extra process): a thread in each
``celery worker`` main process, started with its consumer next to the reaper. Every
``poll_interval`` it reads the task records (one store read) and, for a task whose latest
nominal tick is after the task's ``last_tick``, tries ``claim`` (``adapter.store.schedules``):
the store's compare-and-set lets one worker take the tick. Workers name a tick by its nominal
time, so they agree on it whenever they look; the time they look with is the store's clock
(Redis ``TIME``, PostgreSQL ``now()``), so a worker whose own clock is off still looks at
the right time. Ticks missed while no worker ran collapse into one run, as cron's do.

A claimed run holds a lease (``lease`` seconds, renewed every third of it while it runs), always
timed by the store's clock, even where ``clock`` replaces it for ticks: a worker whose clock is
ahead must not see a live lease as expired. With
``prevent_overlap`` a tick is claimed only while no lease is live, so a run longer than the
interval never overlaps the next; the first tick after it ends runs. A run whose worker dies
stops renewing: its lease expires and later ticks run. ``timeout`` ends a run's claim on the
lease (recorded as failed); the thread itself cannot be stopped. Each finished run is kept in
a bounded history (``history`` runs per task).

Runs are not adapter jobs: the claim, the lease and the history are what a tick needs, and a
job would add a broker round trip and retry semantics (a tick that failed should wait for the
next tick, not run again). A task runs in a thread of the worker's main process.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from adapter.errors import ScheduleError
from adapter.forksafe import no_fork
from adapter.scheduling.info import ScheduledTaskInfo, task_info
from adapter.scheduling.retention_task import retention_task
from adapter.scheduling.task import ScheduledRun, ScheduledTask
from adapter.settings import AdapterSettings
from adapter.store.base import JobStore
from adapter.store.schedules import Claim, RunRecord, ScheduleStore

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class Scheduler:
    """Runs registered scheduled tasks on their ticks, once per tick across all workers."""

    def __init__(
        self,
        store: Callable[[], ScheduleStore],
        *,
        poll_interval: float = 1.0,
        lease: float = 30.0,
        history: int = 100,
        clock: Clock | None = None,
    ) -> None:
        """Keep state in ``store()``; ``clock`` replaces the store's clock for ticks (tests)."""
        self._store = store
        self.poll_interval = poll_interval
        self.lease = lease
        self.history_size = history
        #: Where the time ticks are judged by comes from; None: the store's clock.
        self.clock = clock
        self._tasks: dict[str, ScheduledTask] = {}
        self._registered: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._runs: list[threading.Thread] = []

    @classmethod
    def from_settings(cls, store: JobStore, settings: AdapterSettings) -> Scheduler:
        """The scheduler of an app: its settings, its store, and the retention task if any."""
        scheduler = cls(
            lambda: store.schedules,
            poll_interval=settings.schedule_poll_interval,
            lease=settings.schedule_lease,
            history=settings.schedule_history,
        )
        if settings.retention:
            scheduler.add(
                retention_task(
                    lambda: store.schedules, settings.retention, settings.retention_schedule
                )
            )
        return scheduler

    def add(self, task: ScheduledTask) -> None:
        """Register ``task``; ScheduleError for another task with its id."""
        if self._tasks.get(task.id, task) is not task:
            raise ScheduleError(f"a scheduled task with id {task.id!r} is already registered")
        self._tasks[task.id] = task

    def now(self) -> datetime:
        """Return the time ticks are judged by."""
        return (self.clock or self._store().now)()

    def start(self) -> None:
        """Poll in the background (again after ``stop``); idempotent."""
        if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, args=(self._stop,), name="adapter-scheduler", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; runs in progress finish and are recorded."""
        self._stop.set()

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception as err:  # the store's errors: try next round
                logger.warning("scheduled tasks: could not look for due ticks: %s", err)
            stop.wait(self.poll_interval)

    def poll_once(self) -> list[threading.Thread]:
        """Claim and start every due tick and requested run; return the runs started."""
        store = self._store()
        with no_fork():  # a prefork pool forks its children from this very process
            now = self._register(store)
            records = store.records()
        started = []
        for task in list(self._tasks.values()):
            record = records.get(task.id)
            if record is None:  # the store lost it (emptied): record it again next round
                self._registered.discard(task.id)
                continue
            due: list[datetime | None] = []
            if record.run_requested_at is not None:
                due.append(None)
            tick = task.parsed.latest(now)
            if record.enabled and (record.last_tick is None or record.last_tick < tick):
                due.append(tick)
            for wanted in due:
                run = self._claim(store, task, wanted, now)
                if run is not None:
                    started.append(run)
        return started

    def _claim(
        self, store: ScheduleStore, task: ScheduledTask, tick: datetime | None, now: datetime
    ) -> threading.Thread | None:
        owner = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        with no_fork():
            at = now if self.clock is None else store.now()
            lease_until = at + timedelta(seconds=self.lease)
            if not store.claim(Claim(task.id, tick, owner, at, lease_until, task.prevent_overlap)):
                return None
        logger.info("scheduled task %s: running tick %s as %s", task.id, tick or "now", owner)
        run = threading.Thread(
            target=self._run,
            args=(store, task, ScheduledRun(task.id, tick, owner), now),
            name=f"adapter-scheduled-{task.id}",
            daemon=True,
        )
        run.start()
        self._runs = [thread for thread in self._runs if thread.is_alive()] + [run]
        return run

    def _run(
        self, store: ScheduleStore, task: ScheduledTask, run: ScheduledRun, started: datetime
    ) -> None:
        """Run ``task`` in a thread of its own, renew the lease meanwhile, record the outcome."""
        outcome: dict[str, Any] = {}
        body = threading.Thread(
            target=_execute, args=(task, run, outcome), name=f"{task.id}-body", daemon=True
        )
        body.start()
        deadline = None if task.timeout is None else time.monotonic() + task.timeout
        while True:
            left = self.lease / 3
            if deadline is not None:
                left = min(left, max(deadline - time.monotonic(), 0))
            body.join(left)
            if not body.is_alive():
                break
            if deadline is not None and time.monotonic() >= deadline:
                outcome = {"error": f"timed out after {task.timeout:g}s"}
                logger.error("scheduled task %s: %s; its lease is freed", task.id, outcome["error"])
                break
            try:
                with no_fork():
                    store.renew(run.task_id, run.owner, store.now() + timedelta(seconds=self.lease))
            except Exception as err:  # the lease may lapse; the run goes on
                logger.warning("scheduled task %s: could not renew its lease: %s", task.id, err)
        record = RunRecord(
            task_id=task.id,
            tick=run.tick,
            owner=run.owner,
            started_at=started,
            finished_at=self.now(),
            result=outcome.get("result"),
            error=outcome.get("error"),
        )
        try:
            with no_fork():
                store.finish(record, self.history_size)
        except Exception as err:
            logger.error("scheduled task %s: could not record its run: %s", task.id, err)

    def wait_for_runs(self, timeout: float | None = None) -> bool:
        """Wait until the runs started here have finished; False if some still run."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._runs):
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
        return not any(thread.is_alive() for thread in self._runs)

    def task(self, task_id: str) -> ScheduledTask:
        """Return the registered task ``task_id``; ScheduleError naming it when unknown."""
        try:
            return self._tasks[task_id]
        except KeyError:
            known = ", ".join(sorted(self._tasks)) or "none"
            raise ScheduleError(f"no scheduled task {task_id!r} (known: {known})") from None

    def _register(self, store: ScheduleStore) -> datetime:
        """Record the tasks this process has not recorded yet; return the time now."""
        now = self.now()
        for task in list(self._tasks.values()):
            if task.id not in self._registered:
                store.register(task.id, task.parsed.latest(now))
                self._registered.add(task.id)
        return now

    def run_now(self, task_id: str) -> None:
        """Ask for one run of ``task_id`` now, off schedule; the next worker to look runs it."""
        self.task(task_id)
        store = self._store()
        self._register(store)
        store.request_run(task_id, store.now())

    def update(self, task_id: str, *, enabled: bool) -> ScheduledTaskInfo:
        """Enable or disable ``task_id``'s ticks for every worker; return it as listed."""
        self.task(task_id)
        store = self._store()
        self._register(store)
        store.set_enabled(task_id, enabled)
        return next(info for info in self.tasks() if info.id == task_id)

    def enable(self, task_id: str) -> ScheduledTaskInfo:
        """``update(task_id, enabled=True)``: the dashboard's "Enable"."""
        return self.update(task_id, enabled=True)

    def disable(self, task_id: str) -> ScheduledTaskInfo:
        """``update(task_id, enabled=False)``: the dashboard's "Disable"."""
        return self.update(task_id, enabled=False)

    def tasks(self) -> list[ScheduledTaskInfo]:
        """Every registered task with its state in the store, by id."""
        store = self._store()
        records = store.records()
        now = self.now()
        return [
            task_info(self._tasks[task_id], records.get(task_id), now)
            for task_id in sorted(self._tasks)
        ]

    def history(self, task_id: str, take: int = 100) -> list[RunRecord]:
        """The task's latest finished runs, newest first."""
        self.task(task_id)
        return self._store().history(task_id, take)


def _execute(task: ScheduledTask, run: ScheduledRun, outcome: dict[str, Any]) -> None:
    """Call the task; put its result as JSON, or its error, in ``outcome``."""
    try:
        value = task.call(run)
        if inspect.isawaitable(value):
            value = asyncio.run(_awaited(value))
        outcome["result"] = json.dumps(value, default=str)
    except Exception as err:
        logger.exception("scheduled task %s failed", task.id)
        outcome["error"] = f"{type(err).__name__}: {err}"


async def _awaited(value: Any) -> Any:
    return await value
