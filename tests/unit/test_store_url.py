"""Which job store a deployment gets when none is named."""

from __future__ import annotations

from typing import Any

import pytest

from adapter.celery.strategy import store_url_for


@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        (
            {"adapter_store_url": "postgresql://db/app", "result_backend": "redis://r/1"},
            "postgresql://db/app",
        ),
        ({"result_backend": "redis://127.0.0.1:6379/3"}, "redis://127.0.0.1:6379/3"),
        ({"result_backend": "db+postgresql://u@h/app"}, "postgresql://u@h/app"),
        (
            {"result_backend": "rpc://", "adapter_data_dir": "/srv/jobs"},
            "sqlite:////srv/jobs/jobs.sqlite3",
        ),
        ({"adapter_data_dir": "/srv/jobs"}, "sqlite:////srv/jobs/jobs.sqlite3"),
    ],
)
def test_the_store_follows_the_deployment(conf: dict[str, Any], expected: str) -> None:
    assert store_url_for(conf) == expected
