"""Secrets never print: a URL's password is masked whatever characters it holds.

Each password holds one of ``#``, ``/``, ``?``, ``@``, ``%`` unencoded between two markers
(``SECRET_MARKERS``) that must appear nowhere: not in ``mask_url``'s answer, not in the error a
malformed or unreachable store, broker or result backend URL gives, nor in that error's
traceback (its chained causes included). Every URL points at port 1, where nobody listens.
The CLI and worker output are tested in tests/integration/test_secrets.py.
"""

from __future__ import annotations

import traceback

import pytest
from celery import Celery

from adapter import CeleryJobQueueStrategy
from adapter.celery.app import shown_broker_url
from adapter.errors import ConfigurationError, JobQueueError
from adapter.masking import mask_url
from adapter.store import open_store
from adapter.store.memory import MemoryJobStore

#: The unencoded characters a password may hold that URL parsers split on.
AWKWARD = ["#", "/", "?", "@", "%"]
#: The two halves of every test password; neither may ever be shown.
SECRET_MARKERS = ("pwHEAD", "pwTAIL")


def password(char: str) -> str:
    """Return a password holding ``char`` between the two secret markers."""
    return f"{SECRET_MARKERS[0]}{char}{SECRET_MARKERS[1]}"


def leaks(text: str) -> bool:
    """Tell whether ``text`` shows any part of a test password."""
    return any(marker in text for marker in SECRET_MARKERS)


def shown(err: BaseException) -> str:
    """Return all a log would show of ``err``: its message and traceback, causes included."""
    return "".join(traceback.format_exception(err))


@pytest.mark.parametrize("char", AWKWARD)
@pytest.mark.parametrize(
    ("template", "masked"),
    [
        ("redis://user:{}@127.0.0.1:1/0", "redis://user:***@127.0.0.1:1/0"),
        ("rediss://:{}@h/0?ssl_cert_reqs=none", "rediss://:***@h/0?ssl_cert_reqs=none"),
        ("amqp://guest:{}@127.0.0.1:1//", "amqp://guest:***@127.0.0.1:1//"),
        ("postgresql+psycopg://u:{}@h:1/db", "postgresql+psycopg://u:***@h:1/db"),
        ("db+postgresql://u:{}@h/db", "db+postgresql://u:***@h/db"),
    ],
)
def test_mask_url_hides_a_password_whatever_characters_it_holds(
    template: str, masked: str, char: str
) -> None:
    assert mask_url(template.format(password(char))) == masked


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "amqp://guest@h//",
        "sqlite:////var/lib/app/jobs.sqlite3",
        "filesystem://",
        "memory://name",
        "",
    ],
)
def test_mask_url_leaves_a_url_without_a_password_as_it_is(url: str) -> None:
    assert mask_url(url) == url


@pytest.mark.parametrize("char", AWKWARD)
@pytest.mark.parametrize(
    "template", ["redis://user:{}@127.0.0.1:1/0", "postgresql+psycopg://user:{}@127.0.0.1:1/db"]
)
def test_a_store_url_never_shows_its_password_in_errors(template: str, char: str) -> None:
    try:
        store = open_store(template.format(password(char)))
    except ConfigurationError as err:
        assert str(err).startswith("malformed job store URL ") and "***" in str(err)
        assert not leaks(shown(err))
        return
    assert not leaks(store.url) and "***" in store.url
    with pytest.raises(JobQueueError) as unreachable:
        store.get("any-id")
    assert not leaks(shown(unreachable.value))
    store.close()


@pytest.mark.parametrize("char", AWKWARD)
@pytest.mark.parametrize(
    "setting", ["broker_url=amqp://u:{}@127.0.0.1:1//", "result_backend=redis://u:{}@127.0.0.1:1/1"]
)
def test_a_broker_or_result_backend_url_never_shows_its_password(setting: str, char: str) -> None:
    key, _, template = setting.partition("=")
    app = Celery(f"masking-{key}")
    app.conf.broker_url = "memory://"
    app.conf[key] = template.format(password(char))
    try:
        strategy = CeleryJobQueueStrategy(app, store=MemoryJobStore())
    except ConfigurationError as err:
        assert str(err).startswith(f"malformed {key.replace('_url', '').replace('_', ' ')}")
        assert "***" in str(err) and not leaks(shown(err))
        return
    assert not leaks(shown_broker_url(app))
    strategy.destroy()
