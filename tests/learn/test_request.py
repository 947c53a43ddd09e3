"""A request's rows hashed from per-item raw hashes (serving's path) equal the Arrow path's."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from rtrec.errors import InvalidInputError
from rtrec.features import Hasher
from rtrec.learn.featurize import Featurizer
from tests.learn.test_featurize import T0, catalog, examples, make_cfg


def arrow_path(f: Featurizer, user_id: str, idx: np.ndarray, ts: float, context: dict[str, Any] | None) -> Any:
    """The rows through ``Featurizer.hash``, as a batch of logged events is hashed."""
    n = len(idx)
    items = pa.array([f.items.ids[i] for i in idx.tolist()], pa.string())
    ctx = pa.array([json.dumps(context)] * n) if context else None
    return f.hash(pa.array([user_id] * n, pa.string()), items, idx, np.full(n, ts), ctx)


def assert_same(got: Any, want: Any) -> None:
    (h1, x1, o1), (h2, x2, o2) = got, want
    np.testing.assert_array_equal(h1.indices, h2.indices)
    np.testing.assert_array_equal(h1.offsets, h2.offsets)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(o1, o2)


def learned() -> Featurizer:
    f = Featurizer(make_cfg())
    f.set_catalog(catalog())
    f.update(f.transform(examples([("u0", "i0", T0, 1.0), ("u1", "i5", T0, 0.0)])))  # i5: not in the catalog
    return f


@pytest.mark.parametrize(
    ("user", "ts", "context"),
    [
        ("u0", T0 + 10, None),
        ("u1", T0 + 3599.9, {"device": "mobile"}),
        ("stranger", T0, {"device": 3, "other": "x"}),
        ("u0", -7201.5, {"device": True}),  # before 1970: hour and weekday as the Arrow path floors them
        ("u0", T0, {}),
    ],
)
def test_request_rows_hash_as_the_arrow_path(user: str, ts: float, context: dict[str, Any] | None) -> None:
    f = learned()
    idx = np.array([4, 0, 1, 2, 3, 0, 2], np.int64)  # repeats, an item without a category or tags
    want = arrow_path(f, user, idx, ts, context)
    assert_same(f.hash_request(user, idx, ts, context), want)
    assert len(want[1]) > 0  # the cross encoders have buckets to compare


def test_a_catalog_change_reaches_the_kept_raw_hashes() -> None:
    f = learned()
    idx = np.arange(len(f.items), dtype=np.int64)
    before = f.hash_request("u0", idx, T0)
    f.set_catalog(pa.table({"item_id": ["i0", "i9"], "category": ["hats", "hats"], "tags": [["wool"], None]}))
    idx = np.arange(len(f.items), dtype=np.int64)
    after = f.hash_request("u0", idx, T0)
    assert_same(after, arrow_path(f, "u0", idx, T0, None))
    assert not np.array_equal(before[0].indices, after[0].indices[: len(before[0].indices)])


def test_candidates_take_the_request_path_with_the_same_batch() -> None:
    f = learned()
    idx = np.array([0, 1, 2, 4], np.int64)
    ctx = {"device": "tablet"}
    fast = f.candidates("u0", idx, T0 + 5, ctx)
    slow = f.candidates("u0", idx, T0 + 5, ctx, item_ids=[f.items.ids[i] for i in idx.tolist()])
    for name in ("indices", "offsets", "dense", "xindices", "xoffsets", "item_idx", "user_idx"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)


def test_hash_raw_names_what_is_wrong() -> None:
    h = Hasher(["user", "item"], bits=10)
    table = h.raw_hashes("item", ["a", "b"])
    with pytest.raises(InvalidInputError, match="'item' is missing"):
        h.hash_raw({"user": "u"}, np.zeros(1, np.int64))
    with pytest.raises(InvalidInputError, match=r"item: row index 2 is outside 0\.\.2"):
        h.hash_raw({"user": "u", "item": table}, np.array([0, 2], np.int64))
    with pytest.raises(InvalidInputError, match="user: part must be None, a str"):
        h.hash_raw({"user": 7, "item": table}, np.zeros(1, np.int64))
    with pytest.raises(InvalidInputError, match="tag"):
        Hasher(["user"], bits=25).hash_raw({"user": "u"}, np.zeros(1, np.int64), tag=1)
    with pytest.raises(InvalidInputError, match="namespace"):
        h.raw_hashes("tags", ["a"])
