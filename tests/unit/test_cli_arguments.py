"""The command line reads its options on either side of the command, and modules from here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapter.cli import _parser

JOBQUEUE = str(Path(sys.executable).parent / "jobqueue")


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--app", "tasks", "list"],
        ["list", "--json", "--app", "tasks"],
        ["--json", "list", "--app", "tasks"],
    ],
)
def test_options_go_before_or_after_the_command(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    assert (args.command, args.json, args.app) == ("list", True, "tasks")


def test_no_option_means_the_defaults() -> None:
    args = _parser().parse_args(["list"])
    assert (args.json, args.app) == (False, None)


def test_app_module_is_imported_from_the_current_folder(tmp_path: Path) -> None:
    (tmp_path / "shop_tasks.py").write_text(
        "from adapter import CeleryJobQueueStrategy\n"
        "from adapter.celery.app import create_app\n"
        "jobs = CeleryJobQueueStrategy(create_app('shop'))\n"
        "jobs.start('greet', lambda job: 'hi')\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("ADAPTER_")}
    env.pop("PYTHONPATH", None)
    env.update(ADAPTER_BROKER_URL="memory://", ADAPTER_STORE_URL="memory://cli-cwd")
    done = subprocess.run(
        [JOBQUEUE, "--json", "list", "--app", "shop_tasks"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"items": [], "totalItems": 0}
