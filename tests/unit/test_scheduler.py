"""The scheduler over the memory store, on a clock the test moves: ticks, leases, overlap."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapter.errors import ScheduleError
from adapter.scheduling import ScheduledRun, ScheduledTask, Scheduler
from adapter.scheduling.task import Schedule
from adapter.store.memory import MemoryJobStore
from adapter.store.memory_schedules import MemoryScheduleStore
from adapter.store.schedules import Claim, ScheduleStore

START = datetime(2026, 1, 1, 3, 0, 0, 500_000, tzinfo=UTC)


class FakeClock:
    """A clock the test moves; ``skew`` shifts what one scheduler reads."""

    def __init__(self) -> None:
        self.now = START

    def reading(self, skew: float = 0.0) -> Any:
        return lambda: self.now + timedelta(seconds=skew)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def on_fake_clock() -> tuple[ScheduleStore, FakeClock]:
    """A memory schedule store whose clock (the one leases are timed by) is a FakeClock."""
    clock = FakeClock()
    return MemoryScheduleStore(MemoryJobStore(), clock=clock.reading()), clock


def schedulers(
    store: ScheduleStore, clock: FakeClock, *tasks: ScheduledTask, skews: tuple[float, ...] = (0,)
) -> list[Scheduler]:
    made = []
    for skew in skews:
        scheduler = Scheduler(lambda: store, lease=6.0, clock=clock.reading(skew))
        for task in tasks:
            scheduler.add(task)
        made.append(scheduler)
    return made


def poll_all(made: list[Scheduler]) -> int:
    started = [run for scheduler in made for run in scheduler.poll_once()]
    for scheduler in made:
        assert scheduler.wait_for_runs(timeout=10)
    return len(started)


def test_each_tick_runs_once_across_schedulers_with_skewed_clocks() -> None:
    store, clock, ticks = *on_fake_clock(), []
    task = ScheduledTask(
        id="t", schedule="every 2 seconds", execute=lambda run: ticks.append(run.tick)
    )
    made = schedulers(store, clock, task, skews=(0.0, 1.3, -0.7))
    poll_all(made)  # registers: the tick in progress at registration does not run
    for _ in range(40):
        clock.advance(0.5)
        poll_all(made)
    assert ticks == sorted(set(ticks))
    assert len(ticks) == 10  # 20 s of 2-second ticks
    history = store.history("t", take=100)
    assert sorted(run.tick for run in history if run.tick) == ticks


def test_prevent_overlap_skips_ticks_while_a_run_holds_the_lease() -> None:
    store, clock = on_fake_clock()
    release, started = threading.Event(), []

    def slow(run: ScheduledRun) -> None:
        started.append(run.tick)
        release.wait(10)

    made = schedulers(store, clock, ScheduledTask(id="slow", schedule="every 2s", execute=slow))
    made[0].poll_once()
    clock.advance(2)
    assert len(made[0].poll_once()) == 1
    for _ in range(3):  # the run outlives three intervals
        clock.advance(2)
        assert made[0].poll_once() == []
    release.set()
    assert made[0].wait_for_runs(timeout=10)
    assert len(made[0].poll_once()) == 1  # the first tick after the run ends
    assert made[0].wait_for_runs(timeout=10)
    assert len(started) == 2


def test_overlapping_runs_are_allowed_without_prevent_overlap() -> None:
    store, clock, release = *on_fake_clock(), threading.Event()
    task = ScheduledTask(
        id="o", schedule="every 2s", execute=lambda: release.wait(10), prevent_overlap=False
    )
    made = schedulers(store, clock, task)
    made[0].poll_once()
    clock.advance(2)
    first = made[0].poll_once()
    clock.advance(2)
    second = made[0].poll_once()
    release.set()
    assert (len(first), len(second)) == (1, 1)
    assert made[0].wait_for_runs(timeout=10)


def test_a_run_that_died_blocks_ticks_only_until_its_lease_expires() -> None:
    store, clock = on_fake_clock()
    task = ScheduledTask(id="d", schedule="every 2s", execute=lambda: None)
    (scheduler,) = schedulers(store, clock, task)
    scheduler.poll_once()
    clock.advance(2)
    dead_owner = "gone/1/x"  # a worker that claimed the tick, then died without renewing
    tick, lease_until = clock.now.replace(microsecond=0), clock.now + timedelta(seconds=6)
    assert store.claim(Claim("d", tick, dead_owner, clock.now, lease_until, exclusive=True))
    clock.advance(2)
    assert scheduler.poll_once() == []  # lease still live
    clock.advance(5)
    assert len(scheduler.poll_once()) == 1
    assert scheduler.wait_for_runs(timeout=10)


def test_timeout_records_the_run_as_failed_and_frees_the_lease() -> None:
    store, clock, release = *on_fake_clock(), threading.Event()
    task = ScheduledTask(
        id="slow", schedule="every 2s", execute=lambda: release.wait(10), timeout=0.2
    )
    (scheduler,) = schedulers(store, clock, task)
    scheduler.poll_once()
    clock.advance(2)
    scheduler.poll_once()
    assert scheduler.wait_for_runs(timeout=10)
    release.set()
    (info,) = scheduler.tasks()
    assert info.last_error == "timed out after 0.2s"
    assert not info.running


def test_results_errors_async_and_history_bound() -> None:
    store, clock = on_fake_clock()

    async def answer() -> dict[str, int]:
        await asyncio.sleep(0)
        return {"n": 42}

    def broken() -> None:
        raise RuntimeError("disk full")

    made = schedulers(
        store,
        clock,
        ScheduledTask(id="a", schedule="every 1s", execute=answer),
        ScheduledTask(id="b", schedule="every 1s", execute=broken),
    )
    made[0].history_size = 3
    poll_all(made)
    for _ in range(5):
        clock.advance(1)
        poll_all(made)
    infos = {info.id: info for info in made[0].tasks()}
    assert infos["a"].last_result == {"n": 42} and infos["a"].last_error is None
    assert infos["b"].last_error == "RuntimeError: disk full" and infos["b"].last_result is None
    assert len(made[0].history("a")) == 3


def test_run_now_runs_once_off_schedule_and_disabled_tasks_skip_ticks() -> None:
    store, clock, runs = *on_fake_clock(), []
    task = ScheduledTask(id="r", schedule="0 3 * * *", execute=lambda run: runs.append(run.tick))
    (scheduler,) = schedulers(store, clock, task)
    assert scheduler.update("r", enabled=False).next_run_at is None
    scheduler.run_now("r")
    poll_all([scheduler])
    poll_all([scheduler])
    assert runs == [None]
    clock.advance(86_400)
    poll_all([scheduler])
    assert runs == [None]  # disabled: the 03:00 tick did not run
    info = scheduler.update("r", enabled=True)
    assert info.enabled and info.next_run_at == datetime(2026, 1, 3, 3, 0, tzinfo=UTC)
    with pytest.raises(ScheduleError, match="no scheduled task 'nope'"):
        scheduler.run_now("nope")


def test_schedules_are_checked_and_described() -> None:
    assert Schedule.parse("0 3 * * *").describe() == "At 03:00 AM"
    assert Schedule.parse("*/2 * * * * *").describe() == "Every 2 seconds"
    now = datetime(2026, 1, 1, 3, 0, 1, 500_000, tzinfo=UTC)
    assert Schedule.parse("*/2 * * * * *").latest(now) == now.replace(second=0, microsecond=0)
    assert Schedule.parse("0 3 * * *").latest(now) == now.replace(second=0, microsecond=0)
    for bad in ("0 3 * *", "every 0.5s", "61 * * * *", "soon"):
        with pytest.raises(ScheduleError, match="schedule"):
            Schedule.parse(bad)
    with pytest.raises(ScheduleError, match="already registered"):
        scheduler = Scheduler(lambda: MemoryJobStore().schedules)
        scheduler.add(ScheduledTask(id="x", schedule="every 1s", execute=print))
        scheduler.add(ScheduledTask(id="x", schedule="every 1s", execute=print))


def test_leases_are_timed_by_the_stores_clock_not_a_skewed_tick_clock() -> None:
    store, clock = on_fake_clock()
    release, started = threading.Event(), []

    def long(run: ScheduledRun) -> None:
        started.append(run)
        release.wait(10)

    task = ScheduledTask(id="long", schedule="every 1s", execute=long)
    behind, ahead = schedulers(store, clock, task, skews=(-2.0, 2.0))
    assert ahead.poll_once() == []  # registers: the last tick is 03:00:02
    clock.advance(5)
    assert len(behind.poll_once()) == 1  # its tick 03:00:03; the lease runs to 03:00:11.5
    clock.advance(4.5)  # the ahead clock reads 03:00:12, past 03:00:09.5 (behind's time + 6 s)
    assert ahead.poll_once() == []
    release.set()
    assert behind.wait_for_runs(timeout=10)
    assert len(started) == 1
