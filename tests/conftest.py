"""Fixtures every test folder shares: the URLs of the real servers (see tests/servers.py)."""

import pytest

from tests import servers


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Redis URL (the tests' own database); skips locally, fails in CI when Redis is down."""
    return servers.require("redis")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """RabbitMQ URL; skips locally, fails in CI when RabbitMQ is down."""
    return servers.require("amqp")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL of the ``test`` database; skips locally, fails in CI when it is down."""
    return servers.require("postgres")
