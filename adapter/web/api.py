"""The routes: the page, the reads (Vendure's Admin API job queries) and the operations.

Reads are GET; everything that changes something is a POST (checked by ``app._Guard``). The
strategy is synchronous, so each handler runs its calls in the thread pool.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from pydantic.alias_generators import to_camel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from adapter.errors import JobNotRetryableError, UnknownJobError
from adapter.job import JobState
from adapter.listing import MAX_SKIP, MAX_TAKE
from adapter.store.base import MAX_DEAD_LETTERS
from adapter.web.actions import ACTIONS, Action, changed, log_action, resolve, strategy_part
from adapter.web.app import ApiError, Dashboard
from adapter.web.jobs import all_ids, job_json, search
from adapter.web.openapi import openapi_document
from adapter.web.overview import queues_overview

logger = logging.getLogger(__name__)

#: Jobs a list shows when ``take`` is not given.
PAGE_SIZE = 25
#: The sort of a list when none is given.
DEFAULT_SORT = "createdAt:desc"


def routes() -> list[BaseRoute]:
    """Return every route of the dashboard (specific paths before parameterised ones)."""
    static = resources.files("adapter.web") / "static"
    return [
        Route("/", page),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
        Route("/api/openapi.json", openapi),
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


def _dashboard(request: Request) -> Dashboard:
    found: Dashboard = request.app.state.dashboard
    return found


async def page(request: Request) -> Response:
    """The dashboard page, with this app's CSRF token."""
    html = (resources.files("adapter.web") / "static" / "index.html").read_text("utf-8")
    token = _dashboard(request).csrf_token
    return HTMLResponse(html.replace("{{csrf_token}}", token))


async def openapi(request: Request) -> Response:
    """The OpenAPI document of this API."""
    return JSONResponse(openapi_document())


async def meta(request: Request) -> Response:
    """What the page needs: actions offered, read-only, refresh interval, CSRF token, URLs."""
    dashboard = _dashboard(request)
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
    options, text = _query_options(request)
    return await _page(request, options, text)


async def search_jobs(request: Request) -> Response:
    """A page of jobs for a JobListOptions body (Vendure's ``jobs(options)``); ``?text=``."""
    body = await _json_body(request, default={})
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JobListOptions object", "body")
    return await _page(request, body, request.query_params.get("text"))


async def _page(request: Request, options: dict[str, Any], text: str | None) -> Response:
    dashboard = _dashboard(request)
    found = await run_in_threadpool(search, dashboard.strategy, options, text)
    found["items"] = [job_json(job, dashboard.redaction) for job in found["items"]]
    return JSONResponse(found)


async def jobs_by_id(request: Request) -> Response:
    """The jobs of the given ids (``?id=a&id=b``), unknown ones left out."""
    ids = request.query_params.getlist("id")
    if len(ids) > MAX_TAKE:
        raise ApiError(400, f"at most {MAX_TAKE} ids, got {len(ids)}", "id")
    dashboard = _dashboard(request)
    jobs = await run_in_threadpool(dashboard.strategy.find_many_by_id, ids)
    return JSONResponse([job_json(job, dashboard.redaction) for job in jobs])


async def one_job(request: Request) -> Response:
    """One job, or 404."""
    dashboard = _dashboard(request)
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
    dashboard = _dashboard(request)
    found = await run_in_threadpool(_workers_of, dashboard)
    controls = strategy_part(dashboard.strategy, "queue_controls")
    paused = None
    if callable(controls):  # where queues can be paused (QueueControl.paused)
        found_controls = await run_in_threadpool(controls)
        paused = {name for name, control in found_controls.items() if control.paused}
    overview = await run_in_threadpool(queues_overview, dashboard.strategy, found, paused)
    return JSONResponse(overview)


async def workers(request: Request) -> Response:
    """The workers answering now: host, queues, running jobs."""
    found = await run_in_threadpool(_workers_of, _dashboard(request))
    return JSONResponse([worker.to_wire() for worker in found])


def _workers_of(dashboard: Dashboard) -> list[Any]:
    return dashboard.workers.workers() if dashboard.workers is not None else []


async def schedules(request: Request) -> Response:
    """The scheduled tasks (Vendure's ``scheduledTasks``), where the strategy has a scheduler."""
    tasks = strategy_part(_dashboard(request).strategy, "scheduler.tasks")
    found = await run_in_threadpool(tasks) if callable(tasks) else []
    return JSONResponse([task.to_dict() for task in found])


async def buffers(request: Request) -> Response:
    """Vendure's ``jobBufferSize``: jobs held per buffer (none without a JobQueueService)."""
    service = _dashboard(request).service
    sizes = await run_in_threadpool(service.buffer_size) if service is not None else {}
    return JSONResponse([{"bufferId": name, "size": size} for name, size in sizes.items()])


async def dead_letters(request: Request) -> Response:
    """The newest messages workers refused as not jobs."""
    take = _int(request.query_params.get("take"), "take", 50, MAX_DEAD_LETTERS)
    letters = await run_in_threadpool(_dashboard(request).strategy.dead_letters, take)
    return JSONResponse(
        [{to_camel(k): v for k, v in letter.model_dump(mode="json").items()} for letter in letters]
    )


async def remove_settled_jobs(request: Request) -> Response:
    """Vendure's ``removeSettledJobs(queueNames, olderThan)``: how many were removed."""
    body = await _json_body(request, default={})
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be an object", "body")
    names = body.get("queueNames") or []
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ApiError(400, "queueNames must be a list of queue names", "queueNames")
    older_than = _time(body.get("olderThan"), "olderThan")
    strategy = _dashboard(request).strategy
    removed = await run_in_threadpool(strategy.remove_settled_jobs, names or None, older_than)
    log_action("remove-settled-jobs", f"queues {names or 'all'}", request.state.who, f"{removed}")
    return JSONResponse({"removed": removed})


async def flush_buffers(request: Request) -> Response:
    """Vendure's ``flushBufferedJobs(bufferIds)``: the buffers' jobs are added now."""
    body = await _json_body(request, default={})
    ids = body.get("bufferIds") if isinstance(body, dict) else None
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        raise ApiError(400, "bufferIds must be a list of buffer ids", "bufferIds")
    service = _dashboard(request).service
    if service is None:
        raise ApiError(404, "this dashboard has no JobQueueService, so no buffers", "bufferIds")
    added = await run_in_threadpool(service.flush, *(ids or []))
    log_action("flush-buffers", f"buffers {ids or 'all'}", request.state.who, f"{len(added)}")
    return JSONResponse({"success": True, "jobsAdded": len(added)})


async def job_action(request: Request) -> Response:
    """Run a job action on one job: the job as it is after it."""
    dashboard = _dashboard(request)
    action = _action(dashboard, request.path_params["action"], "job")
    job_id = request.path_params["job_id"]
    before, after, did = await run_in_threadpool(_run_on_job, dashboard, action, job_id)
    if before is None:
        raise ApiError(404, f"no job with id {job_id[:100]!r}", "jobId")
    outcome = "done" if did else "nothing changed"
    log_action(action.name, f"job {job_id}", request.state.who, outcome)
    shown = after if hasattr(after, "to_wire") else before
    return JSONResponse({"changed": did, "job": job_json(shown, dashboard.redaction)})


def _run_on_job(dashboard: Dashboard, action: Action, job_id: str) -> tuple[Any, Any, bool]:
    run = resolve(action, dashboard.strategy)
    assert run is not None  # _action offered only resolvable actions
    before = dashboard.strategy.find_one(job_id)
    if before is None:
        return None, None, False
    after = run(job_id)
    return before, after, changed(action, before, after)


async def many_jobs_action(request: Request) -> Response:
    """Run a job action on ``{"ids": [...]}`` or on every job ``{"options": ...}`` matches."""
    dashboard = _dashboard(request)
    action = _action(dashboard, request.path_params["action"], "job")
    body = await _json_body(request, default=None)
    if not isinstance(body, dict) or ("ids" in body) == ("options" in body):
        raise ApiError(400, 'give either "ids" (a list) or "options" (JobListOptions)', "body")
    ids = body.get("ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        raise ApiError(400, "ids must be a list of job ids", "ids")
    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        raise ApiError(400, "options must be a JobListOptions object", "options")
    done, total = await run_in_threadpool(_run_on_many, dashboard, action, ids, options)
    what = f"{len(ids)} selected job(s)" if ids is not None else f"jobs matching {options}"
    log_action(action.name, what, request.state.who, f"{done} of {total} changed")
    return JSONResponse({"changed": done, "matched": total})


def _run_on_many(
    dashboard: Dashboard, action: Action, ids: list[str] | None, options: dict[str, Any] | None
) -> tuple[int, int]:
    strategy = dashboard.strategy
    many = getattr(strategy, action.many_method, None) if action.many_method else None
    if ids is None and options is not None and callable(many):
        done = int(many(options))
        return done, done
    targets = ids if ids is not None else all_ids(strategy, options or {})
    done = 0
    for job_id in targets:
        try:
            done += _run_on_job(dashboard, action, job_id)[2]
        except (UnknownJobError, JobNotRetryableError) as err:  # one job's, not the batch's
            logger.info("dashboard action %s skipped job %s: %s", action.name, job_id, err)
    return done, len(targets)


async def named_action(request: Request) -> Response:
    """Run a queue or schedule action on the named target."""
    dashboard = _dashboard(request)
    kind = "queue" if request.url.path.startswith("/api/queues/") else "schedule"
    action = _action(dashboard, request.path_params["action"], kind)
    target = request.path_params["target"]
    run = resolve(action, dashboard.strategy)
    assert run is not None
    result = await run_in_threadpool(run, target)
    log_action(action.name, f"{kind} {target}", request.state.who, "done")
    return JSONResponse({"done": True, "result": _plain(result)})


def _action(dashboard: Dashboard, name: str, target: str) -> Action:
    for action in dashboard.actions:
        if action.name == name and action.target == target:
            return action
    known = [a.name for a in ACTIONS if a.target == target]
    offered = [a.name for a in dashboard.actions if a.target == target]
    reason = "unknown" if name not in known else "not available here"
    raise ApiError(404, f"{target} action {name[:50]!r} is {reason} (offered: {offered})", "action")


def _plain(value: Any) -> Any:
    if hasattr(value, "to_wire"):
        return value.to_wire()
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else None


async def _json_body(request: Request, default: Any) -> Any:
    raw = await request.body()
    if not raw.strip():
        return default
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"the body is not valid JSON: {err}", "body") from err


def _query_options(request: Request) -> tuple[dict[str, Any], str | None]:
    """Return JobListOptions and the text search of the list's query parameters."""
    params = request.query_params
    filters: dict[str, Any] = {}
    if queues := params.getlist("queue"):
        filters["queueName"] = {"in": queues}
    if states := params.getlist("state"):
        unknown = [s for s in states if s not in JobState.__members__]
        if unknown:
            raise ApiError(400, f"unknown job state {unknown[0][:50]!r}", "state")
        filters["state"] = {"in": states}
    created: dict[str, str] = {}
    for name, operator in (("from", "after"), ("to", "before")):
        moment = _time(params.get(name), name)
        if moment is not None:
            created[operator] = moment.isoformat()
    if created:
        filters["createdAt"] = created
    field, _, order = (params.get("sort") or DEFAULT_SORT).partition(":")
    if order.lower() not in ("", "asc", "desc"):
        raise ApiError(400, f"sort order must be asc or desc, got {order[:20]!r}", "sort")
    options: dict[str, Any] = {
        "take": _int(params.get("take"), "take", PAGE_SIZE, MAX_TAKE),
        "skip": _int(params.get("skip"), "skip", 0, MAX_SKIP),
        "sort": {field: (order or "desc").upper()},
    }
    if filters:
        options["filter"] = filters
    return options, params.get("text")


def _int(text: str | None, field: str, default: int, high: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= high:
        raise ApiError(
            400, f"{field} must be an integer from 0 to {high}, got {text[:30]!r}", field
        )
    return value


def _time(value: object, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        moment = None
    if moment is None or not 1 < moment.year < 9999:
        raise ApiError(400, f"{field} must be an ISO 8601 time, got {str(value)[:40]!r}", field)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
