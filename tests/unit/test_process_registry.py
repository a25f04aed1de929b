"""ProcessRegistry: which process runs each queue here, and how a forked child finds it."""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

import pytest

from adapter.celery.registry import ProcessRegistry, import_path
from adapter.errors import JobQueueError, ProcessNotImportableError
from adapter.job import Job


def send_email(job: Job) -> str:
    return "sent"


def resize_image(job: Job) -> str:
    return "resized"


class Mailer:
    def send(self, job: Job) -> str:
        return "sent"


def make_registry(*pairs: tuple[str, Any]) -> ProcessRegistry:
    """Return a registry with each (queue name, process) pair added, in order."""
    registry = ProcessRegistry()
    for queue_name, process in pairs:
        registry.add(queue_name, process, require_import_path=False)
    return registry


# add / remove


def test_add_is_true_only_for_the_first_process_of_a_queue() -> None:
    registry = ProcessRegistry()
    assert registry.add("send-email", send_email, require_import_path=False) is True
    assert registry.add("send-email", resize_image, require_import_path=False) is False
    assert registry.add("resize-image", resize_image, require_import_path=False) is True


def test_adding_the_same_pair_again_counts_it_once() -> None:
    registry = ProcessRegistry()
    registry.add("send-email", send_email, require_import_path=False)
    assert registry.add("send-email", send_email, require_import_path=False) is False
    assert registry.remove("send-email", send_email) is True
    assert registry.queue_names() == []


def test_bound_methods_of_the_same_object_are_the_same_process() -> None:
    mailer = Mailer()
    registry = ProcessRegistry()
    assert registry.add("send-email", mailer.send, require_import_path=False) is True
    assert registry.add("send-email", mailer.send, require_import_path=False) is False
    assert registry.remove("send-email", mailer.send) is True


def test_bound_methods_of_two_objects_are_two_processes() -> None:
    first, second = Mailer(), Mailer()
    registry = make_registry(("send-email", first.send), ("send-email", second.send))
    assert registry.remove("send-email", first.send) is False
    assert registry.remove("send-email", second.send) is True


def test_remove_is_true_when_the_last_process_leaves() -> None:
    registry = make_registry(("send-email", send_email), ("send-email", resize_image))
    assert registry.remove("send-email", send_email) is False
    assert registry.queue_names() == ["send-email"]
    assert registry.remove("send-email", resize_image) is True
    assert registry.queue_names() == []


def test_remove_of_a_pair_never_added_is_false() -> None:
    registry = make_registry(("send-email", send_email))
    assert registry.remove("send-email", resize_image) is False
    assert registry.remove("resize-image", send_email) is False
    assert registry.queue_names() == ["send-email"]


def test_queue_names_lists_the_queues_run_here() -> None:
    registry = make_registry(("send-email", send_email), ("resize-image", resize_image))
    assert sorted(registry.queue_names()) == ["resize-image", "send-email"]


def test_process_can_start_again_after_stopping() -> None:
    registry = make_registry(("send-email", send_email))
    registry.remove("send-email", send_email)
    assert registry.add("send-email", send_email, require_import_path=False) is True
    assert registry.resolve("send-email", registry.token_for("send-email")) is send_email


# token_for / resolve in the owner process


def test_token_for_unknown_queue_is_empty() -> None:
    assert make_registry(("send-email", send_email)).token_for("resize-image") == ""


def test_token_for_stopped_queue_is_empty() -> None:
    registry = make_registry(("send-email", send_email))
    registry.remove("send-email", send_email)
    assert registry.token_for("send-email") == ""


def test_resolve_gives_the_first_process_started_for_the_queue() -> None:
    registry = make_registry(("send-email", send_email), ("send-email", resize_image))
    token = registry.token_for("send-email")
    assert token != ""
    assert registry.resolve("send-email", token) is send_email
    assert registry.resolve("send-email", None) is send_email


def test_resolve_in_the_owner_process_follows_the_live_registry() -> None:
    registry = make_registry(("send-email", send_email))
    token = registry.token_for("send-email")
    registry.remove("send-email", send_email)
    assert registry.resolve("send-email", token) is None
    registry.add("send-email", resize_image, require_import_path=False)
    assert registry.resolve("send-email", token) is resize_image


def test_resolve_of_unknown_queue_is_none() -> None:
    registry = make_registry(("send-email", send_email))
    assert registry.resolve("resize-image", None) is None
    assert registry.resolve("resize-image", "") is None


# require_import_path


def test_require_import_path_accepts_a_module_level_function() -> None:
    registry = ProcessRegistry()
    assert registry.add("send-email", send_email, require_import_path=True) is True


def test_require_import_path_refuses_a_lambda_naming_the_queue() -> None:
    registry = ProcessRegistry()
    with pytest.raises(ProcessNotImportableError) as caught:
        registry.add("send-email", lambda job: None, require_import_path=True)
    assert str(caught.value).startswith("cannot start queue 'send-email' with <function ")
    assert "Define the process at module level" in str(caught.value)
    assert isinstance(caught.value, JobQueueError)
    assert registry.queue_names() == []
    assert registry.token_for("send-email") == ""


def test_require_import_path_refuses_a_nested_function() -> None:
    def nested(job: Job) -> None:
        return None

    with pytest.raises(ProcessNotImportableError, match=r"^cannot start queue 'resize-image'"):
        ProcessRegistry().add("resize-image", nested, require_import_path=True)


def test_require_import_path_refuses_a_process_first_added_without_it() -> None:
    def process(job: Job) -> None:
        return None

    registry = make_registry(("send-email", process))
    with pytest.raises(ProcessNotImportableError, match=r"^cannot start queue 'other'"):
        registry.add("other", process, require_import_path=True)


# import_path


def test_import_path_of_module_level_function_is_module_and_name() -> None:
    assert import_path(send_email) == f"{__name__}:send_email"


def test_import_path_of_a_class_function_is_module_and_qualified_name() -> None:
    assert import_path(Mailer.send) == f"{__name__}:Mailer.send"


def test_import_path_of_a_lambda_is_none() -> None:
    assert import_path(lambda job: None) is None


def test_import_path_of_a_nested_function_is_none() -> None:
    def nested(job: Job) -> None:
        return None

    assert import_path(nested) is None


def test_import_path_of_a_bound_method_is_none() -> None:
    assert import_path(Mailer().send) is None


def test_import_path_of_a_function_shadowed_in_its_module_is_none() -> None:
    def send_email(job: Job) -> str:
        return "shadowed"

    send_email.__qualname__ = "send_email"
    assert import_path(send_email) is None


# resolve in a forked child (a prefork worker's pool process)


def _resolve_in_child(registry: ProcessRegistry, tokens: Connection, answers: Connection) -> None:
    queue_name, token = tokens.recv()
    try:
        process = registry.resolve(queue_name, token)
        answers.send(process("job") if process is not None else None)
    except ProcessNotImportableError as err:
        answers.send(f"refused: {err}")


def resolve_in_forked_child(registry: ProcessRegistry, setup: Any) -> Any:
    """Fork a child of ``registry``'s owner, run ``setup`` in the parent, resolve in the child.

    ``setup(registry)`` returns the (queue name, token) the child resolves; the child answers
    what the resolved process returned, None, or the refusal.
    """
    context = multiprocessing.get_context("fork")
    tokens_out, tokens_in = context.Pipe()
    answers_out, answers_in = context.Pipe()
    child = context.Process(target=_resolve_in_child, args=(registry, tokens_out, answers_in))
    child.start()
    try:
        tokens_in.send(setup(registry))
        assert answers_out.poll(60), "the child did not answer"
        return answers_out.recv()
    finally:
        child.join(timeout=60)


def test_child_forked_after_start_resolves_the_process_by_its_slot() -> None:
    def process(job: Any) -> str:
        return "from the slot"

    registry = make_registry(("send-email", process))
    answer = resolve_in_forked_child(registry, lambda r: ("send-email", r.token_for("send-email")))
    assert answer == "from the slot"


def test_child_forked_before_start_imports_the_process_by_its_path() -> None:
    def start_after_fork(registry: ProcessRegistry) -> tuple[str, str]:
        registry.add("send-email", send_email, require_import_path=True)
        return "send-email", registry.token_for("send-email")

    assert resolve_in_forked_child(ProcessRegistry(), start_after_fork) == "sent"


def test_child_forked_before_start_refuses_a_process_without_import_path() -> None:
    def start_after_fork(registry: ProcessRegistry) -> tuple[str, str]:
        registry.add("send-email", lambda job: "lambda", require_import_path=False)
        return "send-email", registry.token_for("send-email")

    answer = resolve_in_forked_child(ProcessRegistry(), start_after_fork)
    assert answer == "refused: queue 'send-email': this worker child has no process in slot 0"


def test_child_given_an_empty_token_hands_the_job_back() -> None:
    registry = make_registry(("send-email", send_email))
    assert resolve_in_forked_child(registry, lambda r: ("send-email", "")) is None
