"""Publishing a job's message: what ``Task.apply_async`` sends, with less work per call.

Every job is one ``adapter.run_job`` message. Celery's ``apply_async`` -> ``send_task`` path
redoes, per call, work whose answer never changes for this one task (checking the arguments
against its signature, looking the task up by name, merging its options twice), and builds an
``AsyncResult``. ``JobPublisher`` does the rest as ``send_task`` does, with Celery's own pieces:

- the message is ``app.amqp.create_task_message``, built by ``adapter.celery.envelope.build``
  (the format is documented there), with the parent and root ids of a job added from inside
  a running task;
- the celery queue goes through ``app.amqp.router``, so ``task_routes`` still apply;
- ``app.amqp.send_task_message`` on a producer of ``app.producer_pool`` sends it: the
  ``before_task_publish`` and ``after_task_publish`` signals, the queue declaration, Celery's
  publish retry policy, and the ``task-sent`` event when ``task_send_sent_event`` is on;
- the queue is declared once per connection, as kombu's ``maybe_declare`` does, but later
  publishes look its cache (``Connection.declared_entities``, by ``hash(queue)``) up directly
  instead of copying the queue, its exchange and binding to let kombu do it: the signals then
  see ``declare=[]``. A reconnection clears the cache, so the queue is declared again.

``publish_many`` (``add_many``) builds every message first, then sends each celery queue's
messages back to back on one producer, inside kombu's ``Producer.batch``: on Redis one pipeline
(nothing is sent before it flushes, so Celery's per-message publish retry is off there), on
RabbitMQ one publish after another on one channel. The messages are the ones ``publish`` sends.

A worker, Flower and ``celery events`` see the message ``apply_async`` would send (a test
compares the two). What is left out: Celery's always-eager setting (a job is always published), and
the ``AsyncResult`` a calling task would list among its children.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery, Task

from adapter.celery.direct import DirectSender
from adapter.celery.envelope import QUEUE_HEADER, TASK_NAME, MessageTemplate, build, job_args
from adapter.celery.priority import broker_priority, declare_job_queue
from adapter.celery.routing import celery_queue
from adapter.errors import BulkPublishError, PublishError
from adapter.job import Job
from adapter.tracing import producer_span


class JobPublisher:
    """Sends the ``adapter.run_job`` message of a job on the celery queue of its queue name."""

    def __init__(self, app: Celery, task: Task) -> None:
        self._app = app
        self._task = task
        self._direct = DirectSender(app)
        self._routes: dict[str, dict[str, Any]] = {}  # queue name -> options, with no task_routes

    def publish(
        self, job: Job, countdown: float | None = None, timeout: float | None = None
    ) -> None:
        """Send the message that runs ``job`` (``countdown`` seconds from now, if given).

        ``timeout``: the job's own timeout per attempt (``adapter.deadlines``), if any.
        PublishError when the broker refuses it.
        """
        try:
            self._send(job, countdown, timeout)
        except Exception as err:  # the broker's errors vary by transport
            raise PublishError(f"could not publish job to queue {job.queue_name!r}: {err}") from err

    def publish_many(self, jobs: Sequence[Job]) -> None:
        """Send the messages of ``jobs``, back to back on one producer per celery queue.

        Every message is built before the first is sent: Celery's message for a queue's first
        job, recast for the others (``envelope.MessageTemplate``). On Redis a celery queue's
        messages go in one LPUSH per priority step (``DirectSender.push_many``), else (or
        when the publish signals are listened to, or traces are on) one after another in
        kombu's ``Producer.batch`` (one pipeline on Redis, one channel on RabbitMQ).
        BulkPublishError, naming the index of the first job not sent, when the broker refuses
        one; it lists the jobs sent before.
        """
        groups: dict[str, list[int]] = {}
        for index, job in enumerate(jobs):
            groups.setdefault(job.queue_name, []).append(index)
        prepared = {
            queue_name: self._prepare_group([jobs[index] for index in indexes])
            for queue_name, indexes in groups.items()
        }
        published: list[int] = []
        for queue_name, indexes in groups.items():
            sent, err = self._send_group(prepared[queue_name])
            if err is not None:
                failed = indexes[sent]
                raise BulkPublishError(
                    f"jobs[{failed}]: could not publish job to queue {queue_name!r}: {err}; "
                    f"{len(published) + sent} of {len(jobs)} jobs were published",
                    published=sorted(published + indexes[:sent]),
                ) from err
            published += indexes

    def _prepare_group(self, jobs: list[Job]) -> list[tuple[Any, dict[str, Any]]]:
        """Return the messages and options of jobs of one queue: the first built, the others
        recast from it when it can be (no task-sent event, countdown or expiry in it)."""
        first, options = self._prepare(jobs[0], None)
        headers = first.headers
        if first.sent_event is not None or headers.get("expires") or headers.get("eta"):
            return [(first, options), *(self._prepare(job, None) for job in jobs[1:])]
        template = MessageTemplate(first, jobs[0])
        return [
            (first, options),
            *((template.message(job), {**options, "priority": job.priority}) for job in jobs[1:]),
        ]

    def _send_group(
        self, prepared: list[tuple[Any, dict[str, Any]]]
    ) -> tuple[int, Exception | None]:
        """Send the messages of one queue on one producer: how many surely went, the error."""
        sent, batched = 0, False
        try:
            with self._app.producer_or_acquire() as producer:
                for _message, options in prepared:
                    self._for_broker(producer, options)
                batched = True
                if self._direct.push_many(producer, prepared):
                    return len(prepared), None
                batched = producer.supports_batch_publish
                # max_size past the group's commands: kombu flushes its pipeline once, at exit
                with producer.batch(max_size=2 * len(prepared) + 2):
                    for message, options in prepared:
                        if batched:  # nothing is sent before the flush: no retry to make
                            options["retry"] = False
                        self._for_broker(producer, options)  # declared by the message before?
                        self._send_message(producer, message, options)
                        sent += 1
        except Exception as err:  # the broker's errors vary by transport
            return (0 if batched else sent), err  # of a failed pipeline none is known sent
        return sent, None

    def _send(self, job: Job, countdown: float | None, timeout: float | None) -> None:
        message, options = self._prepare(job, countdown, timeout)
        with self._app.producer_or_acquire() as producer:
            self._for_broker(producer, options)
            self._send_message(producer, message, options)

    def _prepare(
        self, job: Job, countdown: float | None, timeout: float | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Return the message that runs ``job`` and the options ``send_task_message`` takes."""
        app, amqp = self._app, self._app.amqp
        args = job_args(job)
        options = self._route(job.queue_name, args)
        root_id = parent_id = None
        parent = app.current_worker_task
        if parent:  # a job added by a running task: Flower links the two
            root_id = parent.request.root_id or parent.request.id
            parent_id = parent.request.id
        options["priority"] = job.priority  # the job's own, as the broker reads it at send
        message = build(
            amqp,
            job,
            args,
            timeout=timeout,
            reply_to=app.thread_oid,
            countdown=countdown,
            expires=options.pop("expires", None),
            time_limit=options.pop("time_limit", None),
            soft_time_limit=options.pop("soft_time_limit", None),
            create_sent_event=app.conf.task_send_sent_event,
            root_id=root_id,
            parent_id=parent_id,
            ignore_result=self._task.ignore_result,
        )
        return message, options

    def _route(self, queue_name: str, args: list[Any]) -> dict[str, Any]:
        """Return the ``send_task_message`` options of a job on ``queue_name``, routed.

        With no ``task_routes`` the answer depends on the queue name alone: it is worked out
        once per queue name and copied per message. A router could look at the job, so with
        routes each message is routed.
        """
        known = self._routes.get(queue_name)
        if known is not None:
            return dict(known)
        declare_job_queue(self._app, queue_name)  # as workers declare it (x-max-priority)
        router = self._app.amqp.router
        options: dict[str, Any] = router.route(
            {**self._task._get_exec_options(), "queue": celery_queue(queue_name)},
            TASK_NAME,
            args,
            None,
            self._task,
        )
        if not router.routes:
            self._routes[queue_name] = dict(options)
        return options

    @staticmethod
    def _for_broker(producer: Any, options: dict[str, Any]) -> None:
        """Make ``options`` what ``producer``'s broker takes: its priority, no re-declaring."""
        options["priority"] = broker_priority(
            producer.connection.transport.driver_type, options["priority"]
        )
        if hash(options["queue"]) in producer.connection.declared_entities:
            options["declare"] = []  # declared on this connection: skip kombu's re-check

    def _send_message(self, producer: Any, message: Any, options: dict[str, Any]) -> None:
        headers = message.headers  # a span per message, its context in the headers (if on)
        with producer_span(headers["id"], headers[QUEUE_HEADER], headers):
            direct = self._direct
            if not (
                direct.applies(producer, message, options)
                and direct.send(producer, message, options)
            ):
                self._app.amqp.send_task_message(producer, TASK_NAME, message, **options)
