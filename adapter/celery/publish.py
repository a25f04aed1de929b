"""Publishing a job's message: what ``Task.apply_async`` sends, with less work per call.

Every job is one ``adapter.run_job`` message. Celery's ``apply_async`` -> ``send_task`` path
redoes, per call, work whose answer never changes for this one task (checking the arguments
against its signature, looking the task up by name, merging its options twice, routing), and
builds an ``AsyncResult``. ``JobPublisher`` does the rest as ``send_task`` does:

- the message is ``app.amqp.create_task_message``, built by ``adapter.celery.envelope.build``
  (the format is documented there), with the parent and root ids of a job added from inside
  a running task. A queue's next message is recast from the last one built on the same
  thread (``envelope.MessageTemplate``: only the job's id, argsrepr, timeout and body
  differ) unless a running task adds it, it has a countdown or an expiry, or a ``task-sent``
  event goes with it;
- the celery queue goes through ``app.amqp.router``, so ``task_routes`` still apply (without
  routes, the answer is worked out once per queue name);
- it is sent straight on the channel of a connection of the pool ``app.producer_pool``
  draws from (``adapter.celery.direct``: the same message, the publish signals when anyone
  else listens) once the queue is declared on that connection. No producer is taken for it:
  kombu revives a pooled producer on every acquire (a new exchange binding), several times
  the cost of taking the connection. On Redis a recast message goes as the text Redis stores
  (``DirectSender.push_one``, from a ``stored_message.StoredTemplate`` kept beside the
  queue's ``MessageTemplate``) when nothing else listens to the publish signals and no traces
  are recorded. Otherwise, and whenever a ``task-sent`` event, compression or a custom
  exchange is involved, or the channel refused the message and publish retries are on,
  ``app.amqp.send_task_message`` sends it on a producer of the pool with Celery's
  declaration, publish retry policy and events. A reconnection clears the connection's
  declarations, so the queue is declared again.

``publish_many`` (``add_many``) builds every message first (one per queue built, the others
recast), then sends each celery queue's messages on one producer: on Redis in one LPUSH per
priority step (``Channel.push_stored``), on RabbitMQ (py-amqp) in socket writes of many
messages each (``DirectSender.write_many``), elsewhere back to back in kombu's ``Producer.batch``.

A worker, Flower and ``celery events`` see the message ``apply_async`` would send (tests
compare the two, on the wire). What is left out: Celery's always-eager setting (a job is
always published), and the ``AsyncResult`` a calling task would list among its children.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery, Task

from adapter.celery import amqp_frames
from adapter.celery.direct import DirectSender, drop
from adapter.celery.envelope import QUEUE_HEADER, TASK_NAME, build, job_args
from adapter.celery.priority import broker_priority, declare_job_queue
from adapter.celery.recasting import PreparedGroup, Recast, template_key, template_of
from adapter.celery.routing import celery_queue
from adapter.errors import BulkPublishError, PublishError
from adapter.job import Job
from adapter.tracing import producer_span

#: Message templates a publisher keeps, per queue name and thread, before starting over.
MAX_TEMPLATES = 1024


class JobPublisher:
    """Sends the ``adapter.run_job`` message of a job on the celery queue of its queue name."""

    def __init__(self, app: Celery, task: Task) -> None:
        self._app = app
        self._task = task
        self._direct = DirectSender(app)
        #: Seconds to wait for a pooled connection, read once (as DirectSender reads the rest).
        self._acquire_timeout = app.conf.broker_pool_acquire_timeout
        self._routes: dict[str, dict[str, Any]] = {}  # queue name -> options, with no task_routes
        # (queue name, thread's reply_to, pid) -> the templates of its messages
        self._templates: dict[tuple[str, str, int], Recast] = {}

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
        messages go in one LPUSH per priority step (``DirectSender.push_many``), on RabbitMQ
        in socket writes of many messages each (``DirectSender.write_many``), else (or
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

    def _prepare_group(self, jobs: list[Job]) -> PreparedGroup:
        """Return the first of jobs of one queue built, the others to be recast from it when
        they can be (``_template``)."""
        first, options = self._prepare(jobs[0], None)
        template = template_of(first, jobs[0])
        if template is None:
            built = [(first, options), *(self._prepare(job, None) for job in jobs[1:])]
            return PreparedGroup(jobs, None, built)
        return PreparedGroup(jobs, template, [(first, options)])

    def _recast(self, job: Job) -> tuple[Any, dict[str, Any]]:
        """Return ``_prepare(job, None)``: recast from this thread's last message on the queue
        (``_known``), or built when no template applies."""
        known = self._known(job)
        if known is not None:
            return known.message.message(job), {**known.options, "priority": job.priority}
        message, options = self._prepare(job, None)
        made = template_of(message, job)
        if made is not None and not self._app.current_worker_task:
            if len(self._templates) >= MAX_TEMPLATES:  # many queues or threads: start over
                self._templates.clear()
            self._templates[template_key(self._app, job)] = Recast(made, dict(options))
        return message, options

    def _known(self, job: Job) -> Recast | None:
        """Return the templates of this thread's last message on ``job``'s queue (``reply_to``
        is the thread's, ``origin`` the process's); None for a job added by a running task
        (its parent ids differ) or before the queue's first message here."""
        if self._app.current_worker_task:
            return None
        return self._templates.get(template_key(self._app, job))

    def _send_group(self, group: PreparedGroup) -> tuple[int, Exception | None]:
        """Send the messages of one queue on one producer: how many surely went, the error."""
        sent, known = 0, False  # known: a failure leaves ``sent`` messages surely sent
        try:
            with self._app.producer_or_acquire() as producer:
                self._for_broker(producer.connection, group.first[1])
                if self._direct.push_many(producer, group):  # failed: none known sent
                    return len(group.jobs), None
                prepared = group.messages()
                for _message, options in prepared[1:]:
                    self._for_broker(producer.connection, options)
                if amqp_frames.applies(producer.channel) and self._direct.sends_many(
                    producer, prepared
                ):
                    known = True  # each write's messages are sent when it returns
                    for written in self._direct.write_many(producer, prepared):
                        sent += written
                    return sent, None
                # In kombu's batch nothing is sent before its flush at exit: no retry to make,
                # and of a failed flush none is known sent. max_size is past the group's
                # commands, so that it flushes once.
                known = not producer.supports_batch_publish
                with producer.batch(max_size=2 * len(prepared) + 2):
                    for message, options in prepared:
                        if not known:
                            options["retry"] = False
                        self._send_message(producer, message, options)
                        sent += 1
        except Exception as err:  # the broker's errors vary by transport
            return (sent if known else 0), err
        return sent, None

    def _send(self, job: Job, countdown: float | None, timeout: float | None) -> None:
        """Send ``job``'s message straight on the channel of a connection of the producer
        pool's (``DirectSender``; on Redis recast as the stored text where it can be), else
        with Celery's send on a producer of the pool (which revives one per acquire)."""
        known = self._known(job) if countdown is None and timeout is None else None
        if known is not None and known.stored is not False and self._push_one(known, job):
            return
        if countdown is None and timeout is None:
            message, options = self._recast(job)
        else:
            message, options = self._prepare(job, countdown, timeout)
        headers = message.headers  # a span per message, its context in the headers (if on)
        with producer_span(headers["id"], headers[QUEUE_HEADER], headers):
            if not self._send_direct(message, options):
                self._celery_send(message, options)

    def _push_one(self, known: Recast, job: Job) -> bool:
        """Send ``job``'s message as the text Redis stores (``DirectSender.push_one``); False
        (nothing sent) where that does not apply. When Redis refuses it, Celery's send sends
        it with its retry, if publish retries are on."""
        options = {**known.options, "priority": job.priority}
        with self._connection() as connection:
            self._for_broker(connection, options)
            try:
                return self._direct.push_one(connection, known, job, options)
            except Exception:
                drop(connection)
                if not self._direct.retries(options):
                    raise
        self._celery_send(known.message.message(job), options)
        return True

    def _send_direct(self, message: Any, options: dict[str, Any]) -> bool:
        """Send ``message`` straight on a connection's channel (``DirectSender.send``); False
        (nothing sent) where that does not apply, or when the channel refused it and Celery's
        send should retry it."""
        with self._connection() as connection:
            options = dict(options)
            self._for_broker(connection, options)
            direct = self._direct
            return direct.applies(connection, message, options) and direct.send(
                connection, message, options
            )

    def _celery_send(self, message: Any, options: dict[str, Any]) -> None:
        """Send ``message`` with Celery's ``send_task_message`` on a producer of the pool."""
        with self._app.producer_or_acquire() as producer:
            self._for_broker(producer.connection, options)
            self._app.amqp.send_task_message(producer, TASK_NAME, message, **options)

    def _connection(self) -> Any:
        """Return a connection of the pool the producer pool draws from, to use in ``with``:
        no producer revived (kombu revives one per producer acquired)."""
        connections = self._app.producer_pool.connections
        return connections.acquire(block=True, timeout=self._acquire_timeout)

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
    def _for_broker(connection: Any, options: dict[str, Any]) -> None:
        """Make ``options`` what ``connection``'s broker takes: its priority, no re-declaring."""
        options["priority"] = broker_priority(connection.transport.driver_type, options["priority"])
        if hash(options["queue"]) in connection.declared_entities:
            options["declare"] = []  # declared on this connection: skip kombu's re-check

    def _send_message(self, producer: Any, message: Any, options: dict[str, Any]) -> None:
        headers = message.headers  # a span per message, its context in the headers (if on)
        with producer_span(headers["id"], headers[QUEUE_HEADER], headers):
            direct = self._direct
            batch = getattr(getattr(producer, "_batch_local", None), "current", None)
            if not (
                direct.applies(producer.connection, message, options)
                and direct.send(producer.connection, message, options, batch)
            ):
                self._app.amqp.send_task_message(producer, TASK_NAME, message, **options)
