"""Scheduled tasks on real ``celery worker`` processes sharing one job store.

Three workers (one with its clock 1.3 s ahead, one 0.7 s behind) run a 2-second task and a
1-second task whose runs take 2.5 s, for about 30 s: every tick ran once, and no run of a task
overlapped another.
Then a run whose worker is SIGKILLed mid-way: a later tick runs on another worker once the
dead run's lease has expired.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from adapter import CeleryJobQueueStrategy
from tests.integration.conftest import WorkerProcess
from tests.support import unique_queue, wait_for

SCHEDULED_WORKER = (
    sys.executable, "-m", "celery", "-A", "tests.integration.scheduled_app", "worker",
    "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "INFO",
    "--pool", "threads", "--concurrency", "1",
)  # fmt: skip
FAST = {"ADAPTER_SCHEDULE_POLL_INTERVAL": "0.2", "ADAPTER_SCHEDULE_LEASE": "3"}


def lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def starts(log: Path, task_id: str) -> list[list[str]]:
    return [line for line in lines(log) if line[:2] == ["start", task_id]]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
def test_each_tick_runs_once_on_three_workers_one_with_a_skewed_clock(
    make_worker: Callable[..., WorkerProcess],
    producer: CeleryJobQueueStrategy,
    tmp_path: Path,
) -> None:
    log = tmp_path / "ticks.log"
    env = {
        **FAST,
        "TEST_TICK_LOG": str(log),
        "TEST_TICK_TASKS": "every2=*/2 * * * * *=0.1,long=every 1s=2.5",
    }
    queue = unique_queue("sched")
    workers = [
        make_worker(queue, command=SCHEDULED_WORKER, **env),
        make_worker(queue, command=SCHEDULED_WORKER, TEST_CLOCK_SKEW_S="1.3", **env),
        make_worker(queue, command=SCHEDULED_WORKER, TEST_CLOCK_SKEW_S="-0.7", **env),
    ]
    for worker in workers:
        worker.start()
    wait_for(lambda: len(starts(log, "every2")) >= 15, "15 ticks of every2", timeout=120)
    for worker in workers:
        worker.stop()
    seen = lines(log)
    assert not [line for line in seen if line[0] == "OVERLAP"]
    for task_id in ("every2", "long"):
        ticks = Counter(line[2] for line in starts(log, task_id))
        assert ticks and max(ticks.values()) == 1, ticks
    history = producer.store.schedules.history("every2", take=1000)
    recorded = Counter(run.tick.isoformat() for run in history if run.tick)
    assert max(recorded.values()) == 1
    ended = {line[2] for line in lines(log) if line[:2] == ["end", "every2"]}
    assert set(recorded) <= {line[2] for line in starts(log, "every2")}
    assert len(recorded) >= len(ended) - 1  # a run cut by the shutdown may miss its record


@pytest.mark.timeout(180)
@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
def test_a_run_killed_mid_way_does_not_block_the_next_tick(
    make_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    log = tmp_path / "ticks.log"
    env = {**FAST, "TEST_TICK_LOG": str(log), "TEST_TICK_TASKS": "k=every 2s=block-once"}
    queue = unique_queue("sched-kill")
    workers = [make_worker(queue, command=SCHEDULED_WORKER, **env) for _ in range(2)]
    for worker in workers:
        worker.start()
    first = wait_for(lambda: starts(log, "k"), "the first run to start", timeout=60)[0]
    victim = next(w for w in workers if w.popen is not None and str(w.popen.pid) == first[3])
    victim.kill()
    survivor = next(w for w in workers if w is not victim)
    assert survivor.popen is not None
    later = wait_for(
        lambda: [line for line in lines(log) if line[:2] == ["end", "k"] and line[2] > first[2]],
        "a later tick to run to its end on the surviving worker",
        timeout=60,
    )
    assert later[0][3] == str(survivor.popen.pid)
    survivor.stop()
