"""The dashboard in headless Chromium (Debian's, driven by Playwright) against a real worker
on Redis: the queues overview, filters kept in the URL, a running job's progress moving, a
cancel and a retry through the page. Screenshots go to ``artifacts/dashboard/`` (printed)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapter import CeleryJobQueueStrategy, Job
from adapter.celery.workers import WorkerInspector
from adapter.web import create_app
from tests.servers import in_ci

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"
#: Milliseconds the page gets to show a change (polling every 0.5 s; workers are shared).
SHOWN_MS = 30_000

pytestmark = [pytest.mark.redis, pytest.mark.parametrize("broker_url", ["redis"], indirect=True)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium; skips locally (fails in CI) when Chromium or Playwright is missing."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed"
    if reason is None and not os.path.exists(CHROMIUM):
        reason = f"no Chromium at {CHROMIUM} (scripts/test installs Debian's chromium)"
    if reason is not None:
        if in_ci():
            pytest.fail(f"{reason} [CI is set, so this is a failure]", pytrace=False)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def dashboard(control: CeleryJobQueueStrategy) -> Iterator[str]:
    """The dashboard of ``control`` served by uvicorn on a free loopback port; its base URL."""
    import uvicorn

    app = create_app(control, workers=WorkerInspector(control.app), poll_interval_s=0.5)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    ready = threading.Event()
    while not ready.wait(0.05):
        if server.started:
            ready.set()
        assert thread.is_alive(), "the dashboard server stopped"
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A new page whose confirmation dialogs are accepted by clicking Confirm."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    yield opened
    context.close()


def shot(page: Any, name: str) -> Path:
    """Save a screenshot as a test artifact and print where."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def confirm(page: Any, button: str) -> None:
    """Click an action button, then Confirm in the dialog."""
    page.click(f'button[data-action="{button}"]')
    page.click("#confirm-yes")


def test_filter_watch_progress_and_cancel_in_the_browser(
    page: Any,
    dashboard: str,
    control: CeleryJobQueueStrategy,
    make_worker: Callable[..., Any],
    tmp_path: Path,
) -> None:
    steps, mixed = f"steps-{uuid.uuid4().hex[:8]}", f"mixed-{uuid.uuid4().hex[:8]}"
    make_worker(f"{steps}=stepping,{mixed}=mixed").start()
    running = control.add(Job(queue_name=steps, data={"report": "monthly"}))
    failed = control.add(Job(queue_name=mixed, data={"fail": True}))
    control.add(Job(queue_name=mixed, data={"fail": False}))
    control.flush()

    page.goto(dashboard)
    page.wait_for_selector(f'tr[data-queue="{steps}"]', timeout=SHOWN_MS)
    page.wait_for_function(
        "q => [...document.querySelectorAll('tr[data-queue]')].some("
        "r => r.dataset.queue === q && !r.textContent.includes('none'))",
        arg=mixed,
        timeout=SHOWN_MS,
    )  # a worker is listed for it
    shot(page, "queues")
    row = f'tr[data-queue="{mixed}"]'
    page.click(f'{row} button[data-action="pause"]')
    page.click("#confirm-yes")
    page.wait_for_selector(f'{row} button[data-action="resume"]', timeout=SHOWN_MS)
    assert control.queue_controls()[mixed].paused
    page.click(f'{row} button[data-action="resume"]')
    page.click("#confirm-yes")
    page.wait_for_selector(f'{row} button[data-action="pause"]', timeout=SHOWN_MS)

    page.click("nav a[data-view=jobs]")
    page.select_option("select[name=queue]", mixed)
    page.wait_for_url(re.compile(rf"queue={mixed}"))
    page.select_option("select[name=state]", "FAILED")
    page.wait_for_selector(f'tr[data-job="{failed.id}"]', timeout=SHOWN_MS)
    assert "state=FAILED" in page.url and f"queue={mixed}" in page.url
    page.reload()  # the URL alone brings the filters back
    page.wait_for_selector(f'tr[data-job="{failed.id}"]', timeout=SHOWN_MS)
    assert page.input_value("select[name=queue]") == mixed
    assert page.input_value("select[name=state]") == "FAILED"
    assert page.locator("tr[data-job]").count() == 1
    shot(page, "jobs")

    page.goto(f"{dashboard}?view=job&id={running.id}")
    page.wait_for_selector('section[data-state="RUNNING"]', timeout=SHOWN_MS)
    first = float(page.get_attribute("#progress .bar", "data-progress") or 0)
    page.wait_for_function(
        "p => Number(document.querySelector('#progress .bar').dataset.progress) > p",
        arg=first,
        timeout=SHOWN_MS,
    )
    shot(page, "job")
    page.goto(f"{dashboard}?view=workers")  # the worker running it lists it
    page.wait_for_selector(f'a[href="?view=job&id={running.id}"]', timeout=SHOWN_MS)
    page.wait_for_selector("tr[data-worker] td.num:has-text('ago')", timeout=SHOWN_MS)  # beat
    page.goto(f"{dashboard}?view=job&id={running.id}")
    page.wait_for_selector('section[data-state="RUNNING"]', timeout=SHOWN_MS)
    confirm(page, "cancel")
    page.wait_for_selector('section[data-state="CANCELLED"]', timeout=SHOWN_MS)
    assert control.find_one(str(running.id)).state.value == "CANCELLED"  # type: ignore[union-attr]


def test_retry_a_failed_job_in_the_browser(
    page: Any,
    dashboard: str,
    control: CeleryJobQueueStrategy,
    make_worker: Callable[..., Any],
) -> None:
    mixed = f"mixed-{uuid.uuid4().hex[:8]}"
    make_worker(f"{mixed}=mixed").start()
    failed = control.add(Job(queue_name=mixed, data={"fail": True}))
    control.flush()
    page.goto(f"{dashboard}?view=job&id={failed.id}")
    page.wait_for_selector('section[data-state="FAILED"]', timeout=SHOWN_MS)
    confirm(page, "retry")
    page.click("#retries-of a", timeout=SHOWN_MS)  # lineage: the old job links to its re-run
    page.wait_for_selector(f'section[data-job]:not([data-job="{failed.id}"])', timeout=SHOWN_MS)
    rerun_id = page.get_attribute("section[data-job]", "data-job")
    rerun = control.find_one(str(rerun_id))
    assert rerun is not None and rerun.retried_from == failed.id
    page.click(f'a[href="?view=job&id={failed.id}"]')  # and the re-run links back
    page.wait_for_selector(f'section[data-job="{failed.id}"]', timeout=SHOWN_MS)
