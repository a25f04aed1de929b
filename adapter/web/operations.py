"""The POST routes that change jobs, queues, schedules and buffers: each runs an entry of the
action table (``adapter.web.actions``) or one of Vendure's operations, and logs who did it."""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapter.errors import JobNotRetryableError, UnknownJobError
from adapter.web.actions import ACTIONS, Action, changed, log_action, resolve
from adapter.web.app import ApiError, Dashboard
from adapter.web.jobs import all_ids, job_json
from adapter.web.parsing import dashboard_of, json_body, moment

logger = logging.getLogger(__name__)


async def remove_settled_jobs(request: Request) -> Response:
    """Vendure's ``removeSettledJobs(queueNames, olderThan)``: how many were removed."""
    body = await json_body(request, default={})
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be an object", "body")
    names = body.get("queueNames") or []
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ApiError(400, "queueNames must be a list of queue names", "queueNames")
    older_than = moment(body.get("olderThan"), "olderThan")
    strategy = dashboard_of(request).strategy
    removed = await run_in_threadpool(strategy.remove_settled_jobs, names or None, older_than)
    log_action("remove-settled-jobs", f"queues {names or 'all'}", request.state.who, f"{removed}")
    return JSONResponse({"removed": removed})


async def flush_buffers(request: Request) -> Response:
    """Vendure's ``flushBufferedJobs(bufferIds)``: the buffers' jobs are added now."""
    body = await json_body(request, default={})
    ids = body.get("bufferIds") if isinstance(body, dict) else None
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        raise ApiError(400, "bufferIds must be a list of buffer ids", "bufferIds")
    service = dashboard_of(request).service
    if service is None:
        raise ApiError(404, "this dashboard has no JobQueueService, so no buffers", "bufferIds")
    added = await run_in_threadpool(service.flush, *(ids or []))
    log_action("flush-buffers", f"buffers {ids or 'all'}", request.state.who, f"{len(added)}")
    return JSONResponse({"success": True, "jobsAdded": len(added)})


async def job_action(request: Request) -> Response:
    """Run a job action on one job: the job as it is after it."""
    dashboard = dashboard_of(request)
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
    dashboard = dashboard_of(request)
    action = _action(dashboard, request.path_params["action"], "job")
    body = await json_body(request, default=None)
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
    dashboard = dashboard_of(request)
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
