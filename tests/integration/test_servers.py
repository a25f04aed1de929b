"""The session fixtures hand out servers that really answer."""

import pytest
import redis
import sqlalchemy
from kombu.connection import Connection


@pytest.mark.redis
def test_redis_url_answers_ping(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping() is True
    finally:
        client.close()


@pytest.mark.rabbitmq
def test_amqp_url_connects_to_rabbitmq(amqp_url: str) -> None:
    # kombu's Connection has no annotations.
    with Connection(amqp_url) as connection:  # type: ignore[no-untyped-call, unused-ignore]
        connection.ensure_connection(max_retries=1)
        assert connection.connected
        assert connection.connection.server_properties["product"] == "RabbitMQ"


@pytest.mark.postgres
def test_postgres_url_answers_select_one(postgres_url: str) -> None:
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
