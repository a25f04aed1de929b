"""The Celery side of the adapter: the only package that imports celery or kombu."""

from adapter.celery import filesystem as _fifo_filesystem  # noqa: F401 - registers filesystem://
from adapter.celery import redis_transport as _redis_transport  # noqa: F401 - registers redis://
from adapter.celery.strategy import CeleryJobQueueStrategy

__all__ = ["CeleryJobQueueStrategy"]
