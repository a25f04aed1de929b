"""The Celery side of the adapter: the only package that imports celery or kombu.

Importing it changes nothing outside the adapter: its transports are given to an app when the
app is created (``adapter.celery.app.create_app``) or a strategy is bound to it.
"""

from adapter.celery.strategy import CeleryJobQueueStrategy

__all__ = ["CeleryJobQueueStrategy"]
