"""The adapter's settings: read from a Celery conf or the environment, checked, documented."""

from __future__ import annotations

import os
from typing import Any

import pytest

from adapter.errors import ConfigurationError
from adapter.settings import (
    DATA_DIR,
    HEARTBEAT_INTERVAL,
    SETTINGS,
    AdapterSettings,
    celery_settings_from_environment,
    recommended_celery_settings,
)


def test_every_setting_has_a_key_an_environment_variable_and_a_reason() -> None:
    keys = [setting.key for setting in SETTINGS]
    assert len(set(keys)) == len(keys)
    for setting in SETTINGS:
        assert setting.env and all(name.isupper() for name in setting.env)
        assert setting.kind and setting.why


def test_an_empty_conf_gives_the_defaults() -> None:
    found = AdapterSettings.from_conf({})
    assert found == AdapterSettings()
    assert found.heartbeat_interval == 10.0
    assert found.heartbeat_timeout == 60.0
    assert found.max_redeliveries == 3
    assert found.max_data_bytes == 1024 * 1024
    assert found.dead_letter_queue == "adapter.dead-letter"
    assert found.data_dir == os.path.expanduser("~/.local/share/adapter")


def test_unset_none_and_empty_values_take_the_default() -> None:
    found = AdapterSettings.from_conf({"adapter_dead_letter_queue": None, "adapter_store_url": ""})
    assert found.dead_letter_queue == "adapter.dead-letter"
    assert found.store_url is None


def test_strings_from_the_environment_are_converted() -> None:
    found = AdapterSettings.from_conf(
        {"adapter_heartbeat_interval": "0.5", "adapter_heartbeat_timeout": "2"}
    )
    assert (found.heartbeat_interval, found.heartbeat_timeout) == (0.5, 2.0)


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"adapter_heartbeat_interval": -1}, "adapter_heartbeat_interval must be > 0 seconds"),
        ({"adapter_max_redeliveries": -1}, "adapter_max_redeliveries must be >= 0"),
        ({"adapter_max_redeliveries": 1.5}, "adapter_max_redeliveries must be a whole number"),
        ({"adapter_max_data_bytes": "lots"}, "adapter_max_data_bytes must be a number"),
        ({"adapter_store_url": ["sqlite://"]}, "adapter_store_url must be a URL string"),
        (
            {"adapter_heartbeat_interval": 40},
            "adapter_heartbeat_timeout (60s) must be at least twice adapter_heartbeat_interval",
        ),
    ],
)
def test_a_bad_value_is_refused_naming_its_key(conf: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AdapterSettings.from_conf(conf)
    assert str(caught.value).startswith(message)


def test_a_refused_url_never_shows_its_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        AdapterSettings.from_conf({"result_backend": {"url": "redis://:s3cret@db:6379/1"}})
    assert "s3cret" not in str(caught.value)


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match=r"^ADAPTER_HEARTBEAT_INTERVAL \("):
        celery_settings_from_environment({"ADAPTER_HEARTBEAT_INTERVAL": "soon"})


def test_the_store_follows_the_result_backend_unless_one_is_named() -> None:
    assert AdapterSettings(result_backend="db+postgresql://h/app").job_store_url() == (
        "postgresql://h/app"
    )
    assert AdapterSettings(store_url="redis://r/2", result_backend="db+x://").job_store_url() == (
        "redis://r/2"
    )


def test_the_environment_gives_the_embedded_default_with_celerys_safe_settings() -> None:
    found = celery_settings_from_environment({"ADAPTER_DATA_DIR": "/srv/jobs"})
    assert found["broker_url"] == "filesystem://"
    assert found[DATA_DIR.key] == "/srv/jobs"
    assert found["broker_transport_options"]["data_folder_in"] == "/srv/jobs/broker/messages"
    assert found["adapter_store_url"] is None
    assert found[HEARTBEAT_INTERVAL.key] == 10.0
    assert recommended_celery_settings().items() <= found.items()


def test_the_celery_broker_url_is_read_when_the_adapters_is_unset() -> None:
    celery_only = celery_settings_from_environment({"CELERY_BROKER_URL": "redis://r:6379/0"})
    both = celery_settings_from_environment(
        {"ADAPTER_BROKER_URL": "amqp://h//", "CELERY_BROKER_URL": "redis://r:6379/0"}
    )
    assert celery_only["broker_url"] == "redis://r:6379/0"
    assert "broker_transport_options" not in celery_only
    assert both["broker_url"] == "amqp://h//"
