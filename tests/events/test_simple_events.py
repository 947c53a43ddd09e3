"""Posted event batches parsed natively: never a different verdict or value than the validator."""

from __future__ import annotations

import json
import time
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from rtrec.config import EVENT_TYPES
from rtrec.events.rows import simple_events, to_arrow
from rtrec.events.schema import EVENT_INPUT_COLUMNS
from rtrec.events.validate import Validator

VALIDATOR = Validator()
NOW = time.time()

ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
clean_ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_:é漢", min_size=1, max_size=12)
times = st.one_of(
    st.floats(min_value=1e9, max_value=NOW, allow_nan=False),  # epoch seconds, as time.time() gives
    st.integers(min_value=10**9, max_value=int(NOW)),
    st.integers(min_value=10**11, max_value=int(NOW * 1000)),  # epoch milliseconds
    st.floats(min_value=1e11, max_value=NOW * 1000, allow_nan=False),
    st.sampled_from([99999999999.99999, 1e11, 1.0000005, 2.5e-6, 0.0000015, 0]),  # unit switch, ties
)
far_times = st.one_of(st.integers(-(10**15), 10**15), st.floats(), st.sampled_from([-1, 1e14, NOW + 86400]))
numbers = st.one_of(st.none(), st.integers(-(10**18), 10**18), st.floats(allow_nan=False, allow_infinity=False))


def clean_row(i: int, draw: Any) -> dict[str, Any]:
    etype = draw(st.sampled_from(EVENT_TYPES))
    row: dict[str, Any] = {
        "event_id": f"e{i}",
        "ts": draw(st.floats(min_value=1e9, max_value=NOW, allow_nan=False) | st.integers(10**11, int(NOW * 1000))),
        "user_id": draw(clean_ids),
        "item_id": draw(clean_ids),
        "event_type": etype,
    }
    if etype == "rating" or draw(st.booleans()):
        row["value"] = draw(st.floats(-5, 5) | st.integers(-5, 5))
    if draw(st.booleans()):
        row["request_id"] = draw(clean_ids)
        row["propensity"] = draw(st.floats(min_value=1e-6, max_value=1.0))
    return row


@st.composite
def clean_batches(draw: Any) -> list[dict[str, Any]]:
    return [clean_row(i, draw) for i in range(draw(st.integers(1, 30)))]


@st.composite
def any_rows(draw: Any) -> list[Any]:
    """Rows mostly valid, each field now and then at or over an edge: blank, long or numeric ids,
    times out of range or as text, odd types and values, a context, an unknown field."""

    def field(usual: Any, odd: Any) -> Any:
        return draw(odd if draw(st.integers(0, 14)) == 0 else usual)

    rows: list[Any] = []
    for i in range(draw(st.integers(1, 4))):
        row: dict[str, Any] = {
            "event_id": field(st.just(f"e{i}") | st.none(), st.one_of(ids, st.integers(0, 10**6), st.just(" x"))),
            "ts": field(times, far_times | st.text(max_size=30) | st.none() | st.booleans()),
            "user_id": field(clean_ids | ids, st.just("\t u") | st.just("x" * 600) | st.integers(0, 9)),
            "item_id": field(clean_ids, ids | st.none()),
            "event_type": field(st.sampled_from(EVENT_TYPES), st.sampled_from(["view", "", "Click"])),
        }
        if draw(st.booleans()) or row["event_type"] == "rating":
            row["value"] = field(numbers, st.booleans() | st.just("3") | st.just([1]) | st.none())
        if draw(st.booleans()):
            row["propensity"] = field(st.floats(0, 1), numbers | st.booleans())
        if draw(st.integers(0, 9)) == 0:
            row["context"] = draw(st.sampled_from([None, {}, {"device": "mobile"}, "x"]))
        if draw(st.integers(0, 29)) == 0:
            row["extra"] = 1
        rows.append(row if draw(st.integers(0, 49)) else [row])
    return rows


def python_table(body: bytes) -> tuple[pa.Table, list[Any]]:
    table, _, rejected = to_arrow(json.loads(body), VALIDATOR)
    return table, rejected


@settings(max_examples=300, deadline=None)
@given(any_rows())
def test_a_natively_parsed_batch_is_the_table_the_validator_makes(rows: list[Any]) -> None:
    body = json.dumps(rows, ensure_ascii=False).encode()
    fast = simple_events(body, VALIDATOR, 5000)
    if fast is not None:
        table, rejected = python_table(body)
        assert rejected == []
        assert fast.equals(table), (fast.to_pylist(), table.to_pylist())


@settings(max_examples=200, deadline=None)
@given(clean_batches())
def test_simple_valid_batches_take_the_native_path(rows: list[dict[str, Any]]) -> None:
    body = json.dumps(rows).encode()
    fast = simple_events(body, VALIDATOR, 5000)
    assert fast is not None
    table, rejected = python_table(body)
    assert rejected == []
    assert fast.equals(table)


def test_one_row_the_validator_must_see_sends_the_whole_batch_there() -> None:
    good = {"ts": NOW, "user_id": "u", "item_id": "i", "event_type": "click"}
    assert simple_events(json.dumps([good, good]).encode(), VALIDATOR, 5000) is not None
    for odd in (
        {**good, "context": {"device": "mobile"}},
        {**good, "ts": "2024-01-01T00:00:00Z"},
        {**good, "ts": NOW + 86400 * 365},
        {**good, "event_type": "rating"},
        {**good, "user_id": 17},
    ):
        assert simple_events(json.dumps([good, odd]).encode(), VALIDATOR, 5000) is None, odd
    assert simple_events(b'[{"ts": 1, "user_id": "\\ud800"}]', VALIDATOR, 5000) is None
    assert simple_events(json.dumps([good] * 3).encode(), VALIDATOR, 2) is None  # over max_batch


def test_the_native_path_knows_every_event_field() -> None:
    """The Rust parser keeps its own list of fields (it must know what each one means): a row
    with every field the schema takes, all valid, must still be parsed natively, and equal."""
    row = {
        "event_id": "e",
        "ts": NOW,
        "user_id": "u",
        "item_id": "i",
        "event_type": "rating",
        "value": 4,
        "request_id": "r",
        "propensity": 0.5,
        "context": None,
    }
    assert set(row) == set(EVENT_INPUT_COLUMNS)
    body = json.dumps([row]).encode()
    fast = simple_events(body, VALIDATOR, 5000)
    assert fast is not None
    assert fast.equals(python_table(body)[0])
