"""Every adapter setting in one table: its Celery key, environment variable, type, default, why.

The adapter reads its settings from a Celery app's configuration (``app.conf``) under the keys
of ``SETTINGS``; ``environment_settings()`` reads them from the environment variables of the
same table (``create_app`` applies them; ``celeryconfig.py``, the example, adds the recommended
Celery settings with ``celery_settings_from_environment()``). ``AdapterSettings.from_conf`` is
the one reader: it applies the defaults, converts the types, and refuses a bad value with
``ConfigurationError`` naming its key (never echoing a URL, which may hold a password). A
setting that is unset, ``None`` or ``""`` takes its default.

Two entries are Celery's own settings, read from environment variables the adapter documents:
``broker_url`` and ``result_backend`` (which the job store follows when no store is named).
What the adapter's own task needs (acks late, reject on worker lost, no result, JSON) it
carries per task, so a shop's tasks keep their own. The per-worker Celery settings jobs are
safest with (prefetch 1, ...) are recommendations, each with its reason, in
``recommended_celery_settings()``; ``jobqueue check`` says which ones an app lacks.

This module imports neither celery nor kombu.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from adapter.errors import ConfigurationError

T = TypeVar("T")

#: Largest TCP port.
MAX_PORT = 65_535


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One setting: where it is read, what it holds, and why it exists."""

    #: Key in the Celery app's configuration.
    key: str
    #: Environment variables ``celeryconfig.py`` reads it from; the first one set wins.
    env: tuple[str, ...]
    #: What the value is, as a reader of the documentation says it.
    kind: str
    default: T
    why: str
    #: Turns a raw value (a string from the environment, anything from a conf) into the type;
    #: raises ValueError or TypeError, whose message says what was expected.
    parse: Callable[[object], T]

    def read(self, conf: Mapping[str, Any]) -> T:
        """Return this setting's value in ``conf``, or its default when unset."""
        return self._parsed(conf.get(self.key), self.key)

    def read_environment(self, environ: Mapping[str, str]) -> T:
        """Return this setting's value from the first of its environment variables set."""
        for name in self.env:
            if environ.get(name):
                return self._parsed(environ[name], f"{name} ({self.key})")
        return self.default

    def _parsed(self, raw: object, where: str) -> T:
        if raw is None or raw == "":
            return self.default
        try:
            return self.parse(raw)
        except (TypeError, ValueError) as err:
            raise ConfigurationError(f"{where} must be {err}") from None


def _url(raw: object) -> str:
    if not isinstance(raw, str):
        raise TypeError(f"a URL string, not {type(raw).__name__}")
    return raw


def _name(raw: object) -> str:
    if not isinstance(raw, str):
        raise TypeError(f"a string, not {type(raw).__name__}")
    return raw


def _folder(raw: object) -> str:
    return os.path.abspath(os.path.expanduser(_name(raw)))


def _number(raw: object, kind: type[int] | type[float]) -> float:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise TypeError(f"a number, not {type(raw).__name__}")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"a number, not {raw!r}") from None
    if kind is int and not value.is_integer():
        raise ValueError(f"a whole number, not {raw!r}")
    return value


def _positive_seconds(raw: object) -> float:
    value = _number(raw, float)
    if value <= 0:
        raise ValueError(f"> 0 seconds, not {raw!r}")
    return value


def _positive_count(raw: object) -> int:
    value = int(_number(raw, int))
    if value <= 0:
        raise ValueError(f"> 0, not {raw!r}")
    return value


def _port(raw: object) -> int:
    value = int(_number(raw, int))
    if not 0 <= value <= MAX_PORT:
        raise ValueError(f"a TCP port from 0 to {MAX_PORT}, not {raw!r}")
    return value


def _flag(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"true or false, not {raw!r}")


def _names(raw: object) -> frozenset[str]:
    parts = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(parts, list | tuple | set | frozenset):
        raise TypeError(f"comma-separated names or a list, not {type(raw).__name__}")
    names = frozenset(str(part).strip() for part in parts) - {""}
    return names


def _count(raw: object) -> int:
    value = int(_number(raw, int))
    if value < 0:
        raise ValueError(f">= 0, not {raw!r}")
    return value


def _retention_rules(raw: object) -> tuple[Any, ...]:
    from adapter.retention import parse_rules  # it imports the cron libraries

    return parse_rules(raw)


BROKER_URL: Setting[str] = Setting(
    "broker_url", ("ADAPTER_BROKER_URL", "CELERY_BROKER_URL"), "URL", "filesystem://",
    "Celery's broker: amqp://, redis:// or filesystem:// (the embedded default, no server)",
    _url,
)  # fmt: skip
RESULT_BACKEND: Setting[str | None] = Setting(
    "result_backend", ("CELERY_RESULT_BACKEND",), "URL", None,
    "Celery's result backend; its Redis or database holds the jobs when no store is named",
    _url,
)  # fmt: skip
STORE_URL: Setting[str | None] = Setting(
    "adapter_store_url", ("ADAPTER_STORE_URL",), "URL", None,
    "the job store (sqlite:///, postgresql+psycopg://, redis://); unset: see job_store_url()",
    _url,
)  # fmt: skip
DATA_DIR: Setting[str] = Setting(
    "adapter_data_dir", ("ADAPTER_DATA_DIR",), "folder", _folder("~/.local/share/adapter"),
    "where the embedded broker and the default SQLite store keep their files",
    _folder,
)  # fmt: skip
MAX_DATA_BYTES: Setting[int] = Setting(
    "adapter_max_data_bytes", ("ADAPTER_MAX_DATA_BYTES",), "bytes > 0", 1024 * 1024,
    "the largest job data add() accepts, as JSON: brokers and stores cope with 1 MiB",
    _positive_count,
)  # fmt: skip
HEARTBEAT_INTERVAL: Setting[float] = Setting(
    "adapter_heartbeat_interval", ("ADAPTER_HEARTBEAT_INTERVAL",), "seconds > 0", 10.0,
    "how often a running job tells the store its worker is alive",
    _positive_seconds,
)  # fmt: skip
HEARTBEAT_TIMEOUT: Setting[float] = Setting(
    "adapter_heartbeat_timeout", ("ADAPTER_HEARTBEAT_TIMEOUT",), "seconds >= 2 intervals", 60.0,
    "silence after which a running job's worker is lost and the job runs again",
    _positive_seconds,
)  # fmt: skip
MAX_REDELIVERIES: Setting[int] = Setting(
    "adapter_max_redeliveries", ("ADAPTER_MAX_REDELIVERIES",), "count >= 0", 3,
    "starts beyond retries + 1 a job gets when its workers die, so a job that kills them ends",
    _count,
)  # fmt: skip
DEAD_LETTER_QUEUE: Setting[str] = Setting(
    "adapter_dead_letter_queue", ("ADAPTER_DEAD_LETTER_QUEUE",), "queue name",
    "adapter.dead-letter",
    "the RabbitMQ queue that keeps, as they came, the messages workers refuse as not jobs",
    _name,
)  # fmt: skip
JOB_RESULTS: Setting[bool] = Setting(
    "adapter_job_results", ("ADAPTER_JOB_RESULTS",), "true or false", True,
    "with a result backend, jobs also write Celery results (AsyncResult, Flower); false saves "
    "that write per job (the job store has every outcome)",
    _flag,
)  # fmt: skip
HEALTH_PORT: Setting[int | None] = Setting(
    "adapter_health_port", ("ADAPTER_HEALTH_PORT",), "TCP port", None,
    "where each worker of the app answers GET /health (unset: no endpoint; 0: any free port)",
    _port,
)  # fmt: skip
JOB_TIMEOUT: Setting[float | None] = Setting(
    "adapter_job_timeout", ("ADAPTER_JOB_TIMEOUT",), "seconds > 0", None,
    "the longest a job attempt may run, for queues and jobs without their own timeout "
    "(unset: no limit); the job is told to stop, then stopped after adapter_stop_grace",
    _positive_seconds,
)  # fmt: skip
STOP_GRACE: Setting[float] = Setting(
    "adapter_stop_grace", ("ADAPTER_STOP_GRACE",), "seconds > 0", 5.0,
    "how long a timed-out or cancelled running job has to stop by itself before it is "
    "stopped by force (prefork: its pool process is replaced)",
    _positive_seconds,
)  # fmt: skip
HEALTH_HOST: Setting[str] = Setting(
    "adapter_health_host", ("ADAPTER_HEALTH_HOST",), "address", "127.0.0.1",
    "the address /health listens on: 0.0.0.0 for probes from other machines (Kubernetes)",
    _name,
)  # fmt: skip
SCHEDULER: Setting[bool] = Setting(
    "adapter_scheduler", ("ADAPTER_SCHEDULER",), "true or false", True,
    "the app's workers run its scheduled tasks (adapter.scheduling); false: none runs them",
    _flag,
)  # fmt: skip
SCHEDULE_POLL_INTERVAL: Setting[float] = Setting(
    "adapter_schedule_poll_interval", ("ADAPTER_SCHEDULE_POLL_INTERVAL",), "seconds > 0", 1.0,
    "how often each worker looks for due ticks: a tick starts at most this late",
    _positive_seconds,
)  # fmt: skip
SCHEDULE_LEASE: Setting[float] = Setting(
    "adapter_schedule_lease", ("ADAPTER_SCHEDULE_LEASE",), "seconds > 0", 30.0,
    "a run's lease, renewed every third of it: a run whose worker died blocks ticks this long",
    _positive_seconds,
)  # fmt: skip
SCHEDULE_HISTORY: Setting[int] = Setting(
    "adapter_schedule_history", ("ADAPTER_SCHEDULE_HISTORY",), "count > 0", 100,
    "finished runs kept per scheduled task, newest first",
    _positive_count,
)  # fmt: skip
RETENTION: Setting[tuple[Any, ...]] = Setting(
    "adapter_retention", ("ADAPTER_RETENTION",), "rules", (),
    "settled jobs to remove: QUEUE:STATE:KEEP:MAX_AGE;... (*:COMPLETED:1000:7d), see "
    "adapter.retention; empty: none",
    _retention_rules,
)  # fmt: skip
RETENTION_SCHEDULE: Setting[str] = Setting(
    "adapter_retention_schedule", ("ADAPTER_RETENTION_SCHEDULE",), "cron", "0 */2 * * *",
    "when the workers apply adapter_retention (Vendure cleans jobs every 2 hours)",
    _name,
)  # fmt: skip


def _name_list(raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = raw.split(",")
    if not isinstance(raw, (list, tuple)) or not all(isinstance(item, str) for item in raw):
        raise TypeError("must be comma-separated names")
    return tuple(item.strip() for item in raw if item.strip())


# The dashboard's settings (``jobqueue dashboard``, adapter.web) are read from the environment
# by the command only: they are not Celery settings, so a token never lands in a Celery conf.
DASHBOARD_TOKEN: Setting[str | None] = Setting(
    "adapter_dashboard_token", ("ADAPTER_DASHBOARD_TOKEN",), "secret", None,
    "the bearer token the dashboard requires (as --token, kept out of the process list)",
    _name,
)  # fmt: skip
DASHBOARD_REDACT_KEYS: Setting[tuple[str, ...]] = Setting(
    "adapter_dashboard_redact_keys", ("ADAPTER_DASHBOARD_REDACT_KEYS",), "names", (),
    "job data and result keys (any depth, any case) whose values the dashboard never shows",
    _name_list,
)  # fmt: skip
DASHBOARD_HOST: Setting[str] = Setting(
    "adapter_dashboard_host", ("ADAPTER_DASHBOARD_HOST",), "address", "127.0.0.1",
    "the address the dashboard listens on; another than loopback needs a token or basic auth",
    _name,
)  # fmt: skip
DASHBOARD_PORT: Setting[int] = Setting(
    "adapter_dashboard_port", ("ADAPTER_DASHBOARD_PORT",), "TCP port", 8025,
    "the port the dashboard listens on", _port,
)  # fmt: skip
#: Settings of ``jobqueue dashboard`` only (not in a Celery app's configuration).
DASHBOARD_SETTINGS: tuple[Setting[Any], ...] = (
    DASHBOARD_TOKEN, DASHBOARD_REDACT_KEYS, DASHBOARD_HOST, DASHBOARD_PORT,
)  # fmt: skip


PRIORITY_QUEUES: Setting[frozenset[str]] = Setting(
    "adapter_priority_queues", ("ADAPTER_PRIORITY_QUEUES",), "queue names, or *", frozenset(),
    "RabbitMQ: the job queues declared with x-max-priority, so priority orders them (a queue "
    "that exists without it must be deleted first: RabbitMQ refuses to redeclare it)",
    _names,
)  # fmt: skip

#: Every setting, in the order the documentation lists them.
SETTINGS: tuple[Setting[Any], ...] = (
    BROKER_URL,
    RESULT_BACKEND,
    STORE_URL,
    DATA_DIR,
    MAX_DATA_BYTES,
    HEARTBEAT_INTERVAL,
    HEARTBEAT_TIMEOUT,
    MAX_REDELIVERIES,
    DEAD_LETTER_QUEUE,
    JOB_RESULTS,
    HEALTH_PORT,
    HEALTH_HOST,
    SCHEDULER,
    SCHEDULE_POLL_INTERVAL,
    SCHEDULE_LEASE,
    SCHEDULE_HISTORY,
    RETENTION,
    RETENTION_SCHEDULE,
    JOB_TIMEOUT,
    STOP_GRACE,
    PRIORITY_QUEUES,
)


@dataclass(frozen=True)
class AdapterSettings:
    """The adapter's settings of one Celery app, typed and checked (``from_conf``)."""

    result_backend: str | None = RESULT_BACKEND.default
    store_url: str | None = STORE_URL.default
    data_dir: str = DATA_DIR.default
    max_data_bytes: int = MAX_DATA_BYTES.default
    heartbeat_interval: float = HEARTBEAT_INTERVAL.default
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT.default
    max_redeliveries: int = MAX_REDELIVERIES.default
    dead_letter_queue: str = DEAD_LETTER_QUEUE.default
    job_results: bool = JOB_RESULTS.default
    health_port: int | None = HEALTH_PORT.default
    health_host: str = HEALTH_HOST.default
    scheduler: bool = SCHEDULER.default
    schedule_poll_interval: float = SCHEDULE_POLL_INTERVAL.default
    schedule_lease: float = SCHEDULE_LEASE.default
    schedule_history: int = SCHEDULE_HISTORY.default
    retention: tuple[Any, ...] = RETENTION.default
    retention_schedule: str = RETENTION_SCHEDULE.default
    job_timeout: float | None = JOB_TIMEOUT.default
    stop_grace: float = STOP_GRACE.default

    def __post_init__(self) -> None:
        if self.heartbeat_timeout < 2 * self.heartbeat_interval:
            raise ConfigurationError(
                f"{HEARTBEAT_TIMEOUT.key} ({self.heartbeat_timeout:g}s) must be at least "
                f"twice {HEARTBEAT_INTERVAL.key} ({self.heartbeat_interval:g}s), or live "
                "jobs would be taken for lost"
            )

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> AdapterSettings:
        """Read the settings of a Celery app's configuration; refuse bad or inconsistent ones."""
        return cls(
            result_backend=RESULT_BACKEND.read(conf),
            store_url=STORE_URL.read(conf),
            data_dir=DATA_DIR.read(conf),
            max_data_bytes=MAX_DATA_BYTES.read(conf),
            heartbeat_interval=HEARTBEAT_INTERVAL.read(conf),
            heartbeat_timeout=HEARTBEAT_TIMEOUT.read(conf),
            max_redeliveries=MAX_REDELIVERIES.read(conf),
            dead_letter_queue=DEAD_LETTER_QUEUE.read(conf),
            job_results=JOB_RESULTS.read(conf),
            health_port=HEALTH_PORT.read(conf),
            health_host=HEALTH_HOST.read(conf),
            scheduler=SCHEDULER.read(conf),
            schedule_poll_interval=SCHEDULE_POLL_INTERVAL.read(conf),
            schedule_lease=SCHEDULE_LEASE.read(conf),
            schedule_history=SCHEDULE_HISTORY.read(conf),
            retention=RETENTION.read(conf),
            retention_schedule=RETENTION_SCHEDULE.read(conf),
            job_timeout=JOB_TIMEOUT.read(conf),
            stop_grace=STOP_GRACE.read(conf),
        )

    def job_store_url(self) -> str:
        """Return the job store URL: the one named, else the result backend's, else SQLite.

        The ``adapter_store_url`` setting when there is one; else the Celery result backend's
        Redis or database (``db+...``), so jobs live where results already do; else a SQLite
        file in ``adapter_data_dir``.
        """
        if self.store_url:
            return self.store_url
        backend = self.result_backend or ""
        if backend.startswith(("redis://", "rediss://")):
            return backend
        if backend.startswith("db+"):
            return backend.removeprefix("db+")
        return sqlite_store_url(self.data_dir)


def sqlite_store_url(data_dir: str) -> str:
    """Return the URL of the default SQLite job store in ``data_dir``."""
    return f"sqlite:///{os.path.join(data_dir, 'jobs.sqlite3')}"


#: Seconds between polls of the embedded broker's folder (kombu's default is 1 s).
FILESYSTEM_POLL_INTERVAL_S = 0.1


def filesystem_transport_options(data_dir: str) -> dict[str, Any]:
    """Return ``broker_transport_options`` for the embedded ``filesystem://`` broker.

    One folder serves both directions, so every process on the machine shares the queues; the
    control folder carries broadcasts (inspect, ping) between them.
    """
    messages = os.path.join(data_dir, "broker", "messages")
    return {
        "data_folder_in": messages,
        "data_folder_out": messages,
        "control_folder": os.path.join(data_dir, "broker", "control"),
        "store_processed": False,
        "polling_interval": FILESYSTEM_POLL_INTERVAL_S,
    }


def recommended_celery_settings() -> dict[str, Any]:
    """Return the per-worker Celery settings jobs are safest with; ``jobqueue check`` checks them.

    Recommended, never forced: none changes how a shop's own tasks are acknowledged, serialized
    or keep their results (the adapter's task sets those for itself).
    """
    return {
        # One message per free pool slot: a stopped queue leaves its waiting jobs in the broker.
        "worker_prefetch_multiplier": 1,
        # A worker started before its broker waits for it instead of exiting.
        "broker_connection_retry_on_startup": True,
        # JSON only (Celery's default): a message can never make a worker unpickle code.
        "accept_content": ["json"],
        # RabbitMQ writes messages to disk, so queued jobs outlive a broker restart (Celery's
        # default; the job queues the adapter declares are durable).
        "task_default_delivery_mode": "persistent",
        # The library logs through logging; the application's logging setup stays its own.
        "worker_hijack_root_logger": False,
    }


def environment_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return every entry of ``SETTINGS`` read from the environment, checked.

    The environment is ``os.environ`` unless given; the embedded ``filesystem://`` broker gets
    its folders in the data dir. This is what ``create_app`` applies before any config module.
    """
    env = os.environ if environ is None else environ
    found = {setting.key: setting.read_environment(env) for setting in SETTINGS}
    AdapterSettings.from_conf(found)  # refused as the config is read, not at the first job
    if str(found[BROKER_URL.key]).startswith("filesystem://"):
        found["broker_transport_options"] = filesystem_transport_options(found[DATA_DIR.key])
    return found


def celery_settings_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return ``celeryconfig.py``'s settings: the recommended ones, then the environment's."""
    return {**recommended_celery_settings(), **environment_settings(environ)}
