"""Job data is made JSON-safe: a port of Vendure's job.spec.ts, adapted to Python values.

Vendure evaluates a class instance's getters; here dataclasses and pydantic models (with their
computed fields) become plain dicts. ``ensure_json`` then refuses what has no JSON form.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, computed_field

from adapter.data import MAX_DEPTH_MARKER, ensure_json, sanitize
from adapter.errors import JobDataError, JobQueueError
from tests.factories import make_job

MARCH_FIRST = datetime(2020, 3, 1, 10, 0, 0, tzinfo=UTC)


class Order(BaseModel):
    """A model with a computed field, the Python counterpart of a class with a getter."""

    code: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_price(self) -> int:
        return 42


@dataclasses.dataclass
class Line:
    sku: str
    quantity: int


@dataclasses.dataclass
class Node:
    name: str
    child: Node | None = None
    parent: Node | None = None


class Colour(enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    LARGE = 3


def nested(levels: int, leaf: Any) -> Any:
    """Return ``leaf`` wrapped in ``levels`` dicts: nested(2, x) == {"a": {"a": x}}."""
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


# Port of job.spec.ts, tests 1-8.


def test_model_with_computed_field_becomes_plain_dict() -> None:
    job = make_job(data=Order(code=123))
    assert job.data == {"code": 123, "total_price": 42}
    assert type(job.data) is dict


def test_nested_model_becomes_plain_dict() -> None:
    job = make_job(data={"order": Order(code=123)})
    assert job.data == {"order": {"code": 123, "total_price": 42}}


def test_models_in_a_list_become_plain_dicts() -> None:
    job = make_job(data={"orders": [Order(code=123), Order(code=456)]})
    assert job.data == {
        "orders": [{"code": 123, "total_price": 42}, {"code": 456, "total_price": 42}]
    }


def test_dataclass_becomes_plain_dict_of_its_fields() -> None:
    job = make_job(data=Line(sku="A-1", quantity=2))
    assert job.data == {"sku": "A-1", "quantity": 2}


def test_dataclasses_nested_and_in_a_list_become_plain_dicts() -> None:
    job = make_job(data={"first": Line("A-1", 1), "lines": [Line("B-2", 2), Line("C-3", 3)]})
    assert job.data == {
        "first": {"sku": "A-1", "quantity": 1},
        "lines": [{"sku": "B-2", "quantity": 2}, {"sku": "C-3", "quantity": 3}],
    }


def test_datetime_as_whole_payload_becomes_iso_string() -> None:
    assert make_job(data=MARCH_FIRST).data == "2020-03-01T10:00:00.000Z"


def test_nested_datetime_becomes_iso_string() -> None:
    job = make_job(data={"createdAt": MARCH_FIRST, "history": [MARCH_FIRST]})
    assert job.data == {
        "createdAt": "2020-03-01T10:00:00.000Z",
        "history": ["2020-03-01T10:00:00.000Z"],
    }


def test_object_containing_itself_through_a_child_marks_the_cycle() -> None:
    parent: dict[str, Any] = {"name": "parent"}
    parent["child"] = {"name": "child", "parent": parent}
    job = make_job(data=parent)
    assert job.data == {
        "name": "parent",
        "child": {"name": "child", "parent": "[circular *child.parent]"},
    }


def test_deep_cycle_is_marked_with_its_whole_path() -> None:
    parent: dict[str, Any] = {"name": "parent"}
    parent["child1"] = {"child2": {"child3": {"child4": {"parent": parent}}}}
    job = make_job(data=parent)
    assert job.data == {
        "name": "parent",
        "child1": {
            "child2": {
                "child3": {"child4": {"parent": "[circular *child1.child2.child3.child4.parent]"}}
            }
        },
    }


def test_cycle_through_dataclass_instances_is_marked() -> None:
    parent = Node("parent")
    parent.child = Node("child", parent=parent)
    job = make_job(data=parent)
    assert job.data == {
        "name": "parent",
        "child": {"name": "child", "child": None, "parent": "[circular *child.parent]"},
        "parent": None,
    }


# Cycles and sharing beyond Vendure's tests.


def test_list_containing_itself_marks_the_cycle_with_its_index() -> None:
    items: list[Any] = [1]
    items.append(items)
    assert sanitize({"items": items}) == {"items": [1, "[circular *items.1]"]}


def test_object_shared_by_two_keys_is_copied_at_both_places() -> None:
    shared = {"sku": "A-1"}
    assert sanitize({"a": shared, "b": {"again": shared}}) == {
        "a": {"sku": "A-1"},
        "b": {"again": {"sku": "A-1"}},
    }


def test_sanitized_data_is_a_copy_that_leaves_the_input_untouched() -> None:
    original = {"lines": [Line("A-1", 1)], "at": MARCH_FIRST}
    job = make_job(data=original)
    job.data["lines"].append("extra")
    assert original == {"lines": [Line("A-1", 1)], "at": MARCH_FIRST}


def test_plain_json_data_is_copied_at_every_level() -> None:
    original = {"order": {"lines": [{"sku": "A-1", "quantity": 1}]}, "note": None}
    job = make_job(data=original)
    job.data["order"]["lines"][0]["quantity"] = 2
    job.data["order"]["lines"].append("extra")
    assert original == {"order": {"lines": [{"sku": "A-1", "quantity": 1}]}, "note": None}


def test_a_value_to_convert_deep_in_plain_data_is_converted() -> None:
    value = {"lines": [{"sku": "A-1", "at": MARCH_FIRST, "tags": ("a", "b")}], "n": 1}
    assert sanitize(value) == {
        "lines": [{"sku": "A-1", "at": "2020-03-01T10:00:00.000Z", "tags": ["a", "b"]}],
        "n": 1,
    }


# The depth guard: the root is level 0; a container below level 10 becomes the marker.


def test_eleven_nested_levels_are_kept_whole() -> None:
    assert sanitize(nested(11, "leaf")) == nested(11, "leaf")


def test_container_below_the_tenth_level_becomes_max_depth_marker() -> None:
    assert sanitize(nested(12, "leaf")) == nested(11, MAX_DEPTH_MARKER)


def test_lists_count_as_nesting_levels() -> None:
    value: Any = "leaf"
    for _ in range(12):
        value = [value]
    expected: Any = MAX_DEPTH_MARKER
    for _ in range(11):
        expected = [expected]
    assert sanitize(value) == expected


def test_max_depth_marker_is_the_vendure_text() -> None:
    assert MAX_DEPTH_MARKER == "[max depth reached]"


# Other Python values with an obvious JSON form.


def test_aware_datetime_is_written_in_utc_with_milliseconds() -> None:
    paris = timezone(timedelta(hours=1))
    at = datetime(2020, 3, 1, 11, 0, 0, 123456, tzinfo=paris)
    assert sanitize(at) == "2020-03-01T10:00:00.123Z"


def test_naive_datetime_date_and_time_become_iso_strings() -> None:
    value = {
        "naive": datetime(2020, 3, 1, 10, 0),
        "day": date(2020, 3, 1),
        "at": time(10, 30),
    }
    assert sanitize(value) == {
        "naive": "2020-03-01T10:00:00",
        "day": "2020-03-01",
        "at": "10:30:00",
    }


def test_enum_becomes_its_value() -> None:
    assert sanitize({"colour": Colour.RED, "size": Size.LARGE}) == {"colour": "red", "size": 3}


def test_uuid_becomes_its_text() -> None:
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert sanitize({"ref": value}) == {"ref": "12345678-1234-5678-1234-567812345678"}


def test_tuple_becomes_list() -> None:
    assert sanitize({"point": (1, (2, 3))}) == {"point": [1, [2, 3]]}


def test_number_and_boolean_keys_are_written_as_json_writes_them() -> None:
    assert sanitize({1: "a", 2.5: "b"}) == {"1": "a", "2.5": "b"}
    assert sanitize({True: "yes", "x": {False: "no"}}) == {"true": "yes", "x": {"false": "no"}}


def test_none_and_primitives_are_returned_unchanged() -> None:
    assert sanitize(None) is None
    assert sanitize({"s": "x", "i": 1, "f": 1.5, "b": False}) == {
        "s": "x",
        "i": 1,
        "f": 1.5,
        "b": False,
    }


def test_value_without_json_form_is_left_for_ensure_json_to_refuse() -> None:
    assert sanitize({"tags": {"a"}}) == {"tags": {"a"}}


# ensure_json: the JSON text, or an error naming the key path.


def test_ensure_json_returns_compact_json_text() -> None:
    assert ensure_json({"a": [1, 2], "b": None}) == '{"a":[1,2],"b":null}'


def test_sanitized_data_always_passes_ensure_json() -> None:
    job = make_job(data={"order": Order(code=1), "lines": (Line("A", 1),), "at": MARCH_FIRST})
    assert ensure_json(job.data) == (
        '{"order":{"code":1,"total_price":42},"lines":[{"sku":"A","quantity":1}],'
        '"at":"2020-03-01T10:00:00.000Z"}'
    )


def test_ensure_json_names_the_path_of_a_set_in_a_list() -> None:
    with pytest.raises(JobDataError) as caught:
        ensure_json({"items": [1, 2, {3}]})
    assert str(caught.value) == (
        "data is not JSON-serializable: data.items[2] is a set, which has no JSON form"
    )


def test_ensure_json_names_the_mapping_with_a_non_string_key() -> None:
    with pytest.raises(JobDataError) as caught:
        ensure_json({"lookup": {(1, 2): "x"}})
    assert str(caught.value) == (
        "data is not JSON-serializable: data.lookup has a key of type tuple ((1, 2)); use strings"
    )


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_ensure_json_refuses_numbers_json_cannot_represent(number: float) -> None:
    with pytest.raises(JobDataError) as caught:
        ensure_json({"price": number})
    assert str(caught.value) == (
        f"data is not JSON-serializable: data.price is {number!r}, which JSON cannot represent"
    )


def test_ensure_json_refuses_bytes() -> None:
    with pytest.raises(JobDataError) as caught:
        ensure_json({"files": [{"blob": b"\x00"}]})
    assert str(caught.value) == (
        "data is not JSON-serializable: data.files[0].blob is a bytes, which has no JSON form"
    )


def test_ensure_json_names_the_root_it_is_given() -> None:
    with pytest.raises(JobDataError) as caught:
        ensure_json(object(), root="result")
    assert str(caught.value) == (
        "result is not JSON-serializable: result is a object, which has no JSON form"
    )


def test_job_data_error_is_a_value_error_of_the_adapter() -> None:
    with pytest.raises(JobDataError) as caught:
        ensure_json({"tags": {"a"}})
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, JobQueueError)
