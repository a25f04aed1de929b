"""The dashboard's actions, one table entry each: what it is called, its HTTP route, the
strategy method it calls, and the text a person confirms before it runs.

An action is offered only when its method exists (``available``): pause and resume
(``pause_queue``, ``resume_queue``) and a scheduled task's "run now", "enable" and "disable"
(``scheduler.*``) come from features added beside this one, and appear once the strategy has
them.
``remove_job`` is provided here (``JobRemover``): it deletes one settled job from the store.

Routes: a job action runs on one job (``POST /api/jobs/{id}/{name}``) or on many
(``POST /api/jobs/{name}`` with ``{"ids": [...]}`` or ``{"options": JobListOptions}``, every
job matching the filter); a queue action on ``POST /api/queues/{queue}/{name}``, a schedule
action on ``POST /api/schedules/{schedule}/{name}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from adapter.job import Job

logger = logging.getLogger(__name__)

Target = Literal["job", "queue", "schedule"]


@dataclass(frozen=True)
class Action:
    """One action: its name, label, target kind, strategy method and confirmation text."""

    name: str
    label: str
    target: Target
    #: The strategy method run on one target (a job id, a queue or schedule name); a dotted
    #: path reaches a collaborator's method (``scheduler.run_now``).
    method: str
    #: What the person confirms; ``{what}`` is replaced by the target(s).
    confirm: str
    #: A strategy method taking JobListOptions for "every job matching", when there is one.
    many_method: str | None = None

    def route(self) -> str:
        """Return the route of this action on one target."""
        return {
            "job": f"/api/jobs/{{job_id}}/{self.name}",
            "queue": f"/api/queues/{{queue}}/{self.name}",
            "schedule": f"/api/schedules/{{schedule}}/{self.name}",
        }[self.target]

    def to_wire(self) -> dict[str, Any]:
        """Return the action as the page reads it."""
        return {
            "name": self.name,
            "label": self.label,
            "target": self.target,
            "route": self.route(),
            "confirm": self.confirm,
        }


#: Every action the dashboard knows; ``available`` keeps those the strategy can run.
ACTIONS: tuple[Action, ...] = (
    Action(
        "cancel", "Cancel", "job", "cancel_job",
        "Cancel {what}? A running job is marked CANCELLED and its process is asked to stop.",
    ),
    Action(
        "retry", "Retry", "job", "retry_job",
        "Retry {what}? Each becomes a new job that links back to the old one.",
        many_method="retry_jobs",
    ),
    Action(
        "remove", "Remove", "job", "remove_job",
        "Remove {what} from the store? Only settled jobs are removed; this cannot be undone.",
    ),
    Action("pause", "Pause", "queue", "pause_queue", "Pause queue {what}? No new job starts."),
    Action("resume", "Resume", "queue", "resume_queue", "Resume queue {what}?"),
    Action("run-now", "Run now", "schedule", "scheduler.run_now", "Run scheduled task {what} now?"),
    Action(
        "enable", "Enable", "schedule", "scheduler.enable",
        "Enable scheduled task {what} on every worker?",
    ),
    Action(
        "disable", "Disable", "schedule", "scheduler.disable",
        "Disable scheduled task {what} on every worker? Its ticks are skipped until enabled.",
    ),
)  # fmt: skip


class JobRemover:
    """Removes one settled job by id (the store keeps unsettled ones)."""

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy

    def remove_job(self, job_id: str) -> Job | None:
        """Delete the job if it has settled; return it as it was, or None when unknown."""
        job: Job | None = self.strategy.find_one(job_id)
        if job is not None and job.is_settled:
            self.strategy.store.delete(job_id)
        return job


def resolve(action: Action, strategy: Any) -> Callable[..., Any] | None:
    """Return the callable that runs ``action`` on one target, or None when there is none."""
    found = strategy_part(strategy, action.method)
    if found is None and action.method == "remove_job" and hasattr(strategy, "store"):
        found = JobRemover(strategy).remove_job
    return found if callable(found) else None


def strategy_part(strategy: Any, path: str) -> Any:
    """Return the attribute at dotted ``path`` of ``strategy``, or None where one is missing."""
    found = strategy
    for name in path.split("."):
        found = getattr(found, name, None)
        if found is None:
            return None
    return found


def available(strategy: Any, read_only: bool) -> list[Action]:
    """Return the actions to offer: none when read-only, else those the strategy can run."""
    if read_only:
        return []
    return [action for action in ACTIONS if resolve(action, strategy) is not None]


def changed(action: Action, before: Job | None, after: Any) -> bool:
    """Return whether running ``action`` on a job changed something."""
    if action.name == "cancel":
        return before is not None and not before.is_settled and after is not None
    if action.name == "remove":
        return before is not None and before.is_settled
    return after is not None


def log_action(action: str, what: str, author: str, outcome: str) -> None:
    """Log one action: who ran which, on what, with which outcome."""
    logger.info("dashboard action %s on %s by %s: %s", action, what, author, outcome)
