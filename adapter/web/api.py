"""The routes: the page, the reads (Vendure's Admin API job queries), and the operations
(``adapter.web.operations``).

Reads are GET; everything that changes something is a POST (checked by ``app._Guard``). The
strategy is synchronous, so each handler runs its calls in the thread pool.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from pydantic.alias_generators import to_camel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from adapter.errors import ConfigurationError
from adapter.job import JobState
from adapter.listing import MAX_TAKE
from adapter.store.base import MAX_DEAD_LETTERS
from adapter.web.actions import strategy_part
from adapter.web.app import ApiError, Dashboard
from adapter.web.jobs import job_json, search
from adapter.web.openapi import openapi_document
from adapter.web.operations import (
    flush_buffers,
    job_action,
    many_jobs_action,
    named_action,
    remove_settled_jobs,
)
from adapter.web.overview import queues_overview, worker_heartbeats, workers_with_heartbeats
from adapter.web.parsing import dashboard_of, json_body, query_options, whole


def routes() -> list[BaseRoute]:
    """Return every route of the dashboard (specific paths before parameterised ones)."""
    static = resources.files("adapter.web") / "static"
    return [
        Route("/", page),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
        Route("/api/openapi.json", openapi),
        Route("/metrics", metrics),
        Route("/api/meta", meta),
        Route("/api/jobs", list_jobs),
        Route("/api/jobs/search", search_jobs, methods=["POST"]),
        Route("/api/jobs-by-id", jobs_by_id),
        Route("/api/jobs/{job_id}", one_job),
        Route("/api/queues", queues),
        Route("/api/workers", workers),
        Route("/api/buffers", buffers),
        Route("/api/schedules", schedules),
        Route("/api/dead-letters", dead_letters),
        Route("/api/remove-settled-jobs", remove_settled_jobs, methods=["POST"]),
        Route("/api/buffers/flush", flush_buffers, methods=["POST"]),
        Route("/api/jobs/{job_id}/{action}", job_action, methods=["POST"]),
        Route("/api/jobs/{action}", many_jobs_action, methods=["POST"]),
        Route("/api/queues/{target}/{action}", named_action, methods=["POST"]),
        Route("/api/schedules/{target}/{action}", named_action, methods=["POST"]),
    ]


async def page(request: Request) -> Response:
    """The dashboard page, with this app's CSRF token."""
    html = (resources.files("adapter.web") / "static" / "index.html").read_text("utf-8")
    token = dashboard_of(request).csrf_token
    return HTMLResponse(html.replace("{{csrf_token}}", token))


async def openapi(request: Request) -> Response:
    """The OpenAPI document of this API."""
    return JSONResponse(openapi_document())


async def metrics(request: Request) -> Response:
    """Prometheus metrics of the strategy's job store (``adapter.metrics``), behind the login."""
    from adapter.metrics import render

    try:
        body, content_type = await run_in_threadpool(render, dashboard_of(request).strategy)
    except ConfigurationError as err:  # prometheus_client is not installed
        raise ApiError(404, str(err)) from err
    return Response(body, media_type=content_type)


async def meta(request: Request) -> Response:
    """What the page needs: actions offered, read-only, refresh interval, CSRF token, URLs."""
    dashboard = dashboard_of(request)
    return JSONResponse(
        {
            "readOnly": dashboard.read_only,
            "actions": [action.to_wire() for action in dashboard.actions],
            "pollIntervalS": dashboard.poll_interval_s,
            "csrfToken": dashboard.csrf_token,
            "urls": dashboard.shown_urls,
            "states": [state.value for state in JobState],
            "buffers": dashboard.service is not None,
            "schedules": callable(strategy_part(dashboard.strategy, "scheduler.tasks")),
        }
    )


async def list_jobs(request: Request) -> Response:
    """A page of jobs from query parameters (the dashboard's filters)."""
    options, text = query_options(request)
    return await _page(request, options, text)


async def search_jobs(request: Request) -> Response:
    """A page of jobs for a JobListOptions body (Vendure's ``jobs(options)``); ``?text=``."""
    body = await json_body(request, default={})
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JobListOptions object", "body")
    return await _page(request, body, request.query_params.get("text"))


async def _page(request: Request, options: dict[str, Any], text: str | None) -> Response:
    dashboard = dashboard_of(request)
    found = await run_in_threadpool(search, dashboard.strategy, options, text)
    found["items"] = [job_json(job, dashboard.redaction) for job in found["items"]]
    return JSONResponse(found)


async def jobs_by_id(request: Request) -> Response:
    """The jobs of the given ids (``?id=a&id=b``), unknown ones left out."""
    ids = request.query_params.getlist("id")
    if len(ids) > MAX_TAKE:
        raise ApiError(400, f"at most {MAX_TAKE} ids, got {len(ids)}", "id")
    dashboard = dashboard_of(request)
    jobs = await run_in_threadpool(dashboard.strategy.find_many_by_id, ids)
    return JSONResponse([job_json(job, dashboard.redaction) for job in jobs])


async def one_job(request: Request) -> Response:
    """One job, or 404."""
    dashboard = dashboard_of(request)
    job_id = request.path_params["job_id"]
    job = await run_in_threadpool(dashboard.strategy.find_one, job_id)
    if job is None:
        raise ApiError(404, f"no job with id {job_id[:100]!r}", "jobId")
    shown = job_json(job, dashboard.redaction)
    retries_of = getattr(dashboard.strategy, "retries_of", None)
    if callable(retries_of):  # lineage the other way: the jobs that re-ran this one
        shown["retriesOf"] = [rerun.id for rerun in await run_in_threadpool(retries_of, job_id)]
    return JSONResponse(shown)


async def queues(request: Request) -> Response:
    """Per queue: jobs by state, oldest waiting age, last hour's outcomes, workers, paused."""
    dashboard = dashboard_of(request)
    found = await run_in_threadpool(_workers_of, dashboard)
    controls = strategy_part(dashboard.strategy, "queue_controls")
    paused = None
    if callable(controls):  # where queues can be paused (QueueControl.paused)
        found_controls = await run_in_threadpool(controls)
        paused = {name for name, control in found_controls.items() if control.paused}
    overview = await run_in_threadpool(queues_overview, dashboard.strategy, found, paused)
    return JSONResponse(overview)


async def workers(request: Request) -> Response:
    """The workers: those answering now (host, queues, running jobs) and those whose last
    heartbeat is in the store, with its age."""
    dashboard = dashboard_of(request)
    found = await run_in_threadpool(_workers_of, dashboard)
    beats = await run_in_threadpool(worker_heartbeats, dashboard.strategy)
    return JSONResponse(workers_with_heartbeats(found, beats, time.time()))


def _workers_of(dashboard: Dashboard) -> list[Any]:
    return dashboard.workers.workers() if dashboard.workers is not None else []


async def schedules(request: Request) -> Response:
    """The scheduled tasks (Vendure's ``scheduledTasks``), where the strategy has a scheduler."""
    tasks = strategy_part(dashboard_of(request).strategy, "scheduler.tasks")
    found = await run_in_threadpool(tasks) if callable(tasks) else []
    return JSONResponse([task.to_dict() for task in found])


async def buffers(request: Request) -> Response:
    """Vendure's ``jobBufferSize``: jobs held per buffer (none without a JobQueueService)."""
    service = dashboard_of(request).service
    sizes = await run_in_threadpool(service.buffer_size) if service is not None else {}
    return JSONResponse([{"bufferId": name, "size": size} for name, size in sizes.items()])


async def dead_letters(request: Request) -> Response:
    """The newest messages workers refused as not jobs."""
    take = whole(request.query_params.get("take"), "take", 50, MAX_DEAD_LETTERS)
    letters = await run_in_threadpool(dashboard_of(request).strategy.dead_letters, take)
    return JSONResponse(
        [{to_camel(k): v for k, v in letter.model_dump(mode="json").items()} for letter in letters]
    )
