"""Preflight: settings that lose, duplicate or endanger jobs, found before they do.

``check_settings(app)`` reads the app's Celery settings and returns findings; ``jobqueue check``
prints them and the worker logs them at start-up. It checks what is per worker or per broker
(``adapter.settings.recommended_celery_settings`` says why each is recommended); the adapter's
task carries its own delivery options (acks late, reject on worker lost, JSON), so the app-wide
defaults the shop's tasks use are not findings. What cannot be read from the client side is
said as such (RabbitMQ's ``consumer_timeout`` is a server setting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: kombu's default Redis ``visibility_timeout``, in seconds.
REDIS_DEFAULT_VISIBILITY_TIMEOUT_S = 3600.0
#: RabbitMQ's default ``consumer_timeout``, in seconds (30 minutes).
RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_S = 1800.0
_UNSAFE_CONTENT = {"pickle", "yaml", "msgpack", "application/x-python-serialize"}


@dataclass(frozen=True)
class Finding:
    """One dangerous or doubtful setting and why."""

    setting: str
    message: str


def check_settings(app: Any, longest_job_s: float | None = None) -> list[Finding]:
    """Return the findings for ``app``; ``longest_job_s`` is the longest job or retry delay."""
    conf = app.conf
    findings: list[Finding] = []
    unsafe = sorted(_UNSAFE_CONTENT & {str(c) for c in conf.accept_content or ()})
    if unsafe:
        findings.append(
            Finding(
                "accept_content",
                f"accepts {', '.join(unsafe)}: a message "
                "could run code on the worker; accept only json",
            )
        )
    if (conf.worker_prefetch_multiplier or 0) != 1:
        findings.append(
            Finding(
                "worker_prefetch_multiplier",
                "not 1: a worker holds waiting "
                "jobs it is not running, so stop/shutdown hands them back late",
            )
        )
    if conf.broker_connection_retry_on_startup is not True:
        findings.append(
            Finding(
                "broker_connection_retry_on_startup",
                "not True: a worker started before the broker exits instead of waiting for it",
            )
        )
    findings.extend(_broker_findings(str(conf.broker_url or ""), conf, longest_job_s))
    return findings


def _broker_findings(url: str, conf: Any, longest_job_s: float | None) -> list[Finding]:
    options = conf.broker_transport_options or {}
    if url.startswith(("redis://", "rediss://")):
        timeout = float(options.get("visibility_timeout", REDIS_DEFAULT_VISIBILITY_TIMEOUT_S))
        if longest_job_s is not None and timeout < longest_job_s:
            return [
                Finding(
                    "broker_transport_options.visibility_timeout",
                    f"{timeout:.0f}s is "
                    f"shorter than the longest job ({longest_job_s:.0f}s): Redis hands "
                    "a still-running task to a second worker (the adapter drops such a copy "
                    "of a job while its heartbeat is fresh; other tasks of the app run twice)",
                )
            ]
        return []
    if url.startswith(("amqp://", "amqps://", "pyamqp://")):
        if longest_job_s is not None and longest_job_s > RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_S:
            return [
                Finding(
                    "consumer_timeout (RabbitMQ server)",
                    f"the longest job "
                    f"({longest_job_s:.0f}s) exceeds RabbitMQ's default consumer_timeout "
                    f"({RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_S:.0f}s): raise it on the "
                    "server, or the channel is closed mid-job",
                )
            ]
        return []
    if url.startswith("filesystem://"):
        return [
            Finding(
                "broker_url",
                "filesystem:// (the embedded default) loses the messages a killed worker "
                "had taken but not started (the reaper brings back only jobs that had "
                "started): use RabbitMQ or Redis in production",
            )
        ]
    return []
