"""The native hasher against the pure-Python reference, plus its input handling."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtrec import _native
from rtrec.errors import InvalidInputError
from rtrec.features import Hasher
from tests.features.reference import hash_rows, murmur3_32

text = st.text(max_size=12)
maybe_text = st.one_of(st.none(), text)
maybe_list = st.one_of(st.none(), st.lists(maybe_text, max_size=4))


@given(st.binary(max_size=40), st.integers(0, 2**32 - 1))
def test_murmur3_matches_reference(data: bytes, seed: int) -> None:
    assert _native.murmur3_32(data, seed) == murmur3_32(data, seed)


def test_murmur3_known_answers() -> None:
    assert _native.murmur3_32("", 1) == 0x514E28B7
    assert _native.murmur3_32("Hello, world!", 1234) == 0xFAF6CDB3
    assert murmur3_32(b"The quick brown fox jumps over the lazy dog") == 0x2E4FF723


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.tuples(maybe_text, maybe_text, maybe_list), min_size=0, max_size=20),
    bits=st.integers(1, 32),
    seed=st.integers(0, 2**32 - 1),
)
def test_native_equals_reference(
    rows: list[tuple[str | None, str | None, list[str | None] | None]], bits: int, seed: int
) -> None:
    namespaces = ["user", "item", "tags"]
    crosses = [("user", "tags"), ("user", "item")]
    cols = {
        "user": [r[0] for r in rows],
        "item": [r[1] for r in rows],
        "tags": pa.array([r[2] for r in rows], type=pa.list_(pa.string())),
    }
    h = Hasher(namespaces, bits=bits, seed=seed, crosses=crosses, signed=True)
    out = h.hash(cols)
    ref_cols = {"user": cols["user"], "item": cols["item"], "tags": [r[2] for r in rows]}
    indices, offsets, signs = hash_rows(ref_cols, namespaces, bits=bits, seed=seed, crosses=crosses)
    assert out.indices.tolist() == indices
    assert out.offsets.tolist() == offsets
    assert out.signs is not None and out.signs.tolist() == signs
    assert all(0 <= i < 2**bits for i in out.indices.tolist())


def test_sliced_chunked_large_and_dictionary_columns_hash_like_plain_ones() -> None:
    values = ["a", None, "", "ümlaut", "b", "c"]
    h = Hasher(["x"], bits=16)
    expected = h.hash({"x": values[2:5]}).indices.tolist()
    variants = [
        pa.array(values).slice(2, 3),
        pa.array(values, type=pa.large_string()).slice(2, 3),
        pa.chunked_array([values[2:3], values[3:5]]),
        pa.array(values).dictionary_encode().slice(2, 3),
    ]
    for v in variants:
        assert h.hash({"x": v}).indices.tolist() == expected, v.type
    tags = pa.array([["z"], ["a", None, "b"], None, ["c"]], type=pa.large_list(pa.large_string())).slice(1, 2)
    got = Hasher(["t"], bits=16).hash({"t": tags})
    assert got.offsets.tolist() == [0, 2, 2]
    ref, _, _ = hash_rows({"t": [["a", None, "b"], None]}, ["t"], bits=16)
    assert got.indices.tolist() == ref


def test_non_string_columns_are_cast_to_text() -> None:
    h = Hasher(["hour"], bits=12)
    assert (
        h.hash({"hour": pa.array([7, None], type=pa.int8())}).indices.tolist()
        == h.hash({"hour": ["7", None]}).indices.tolist()
    )


def test_namespaces_do_not_collide_on_equal_values() -> None:
    out = Hasher(["user", "item"], bits=32).hash({"user": ["42"], "item": ["42"]})
    assert out.indices[0] != out.indices[1]


def test_collision_stats_count_inputs_and_buckets() -> None:
    values = [str(i) for i in range(1000)]
    out = Hasher(["item"], bits=6).hash({"item": values + values}, stats=True)
    assert out.stats == {"features": 2000, "distinct_inputs": 1000, "distinct_buckets": 64}
    assert out.collision_rate == pytest.approx(1 - 64 / 1000)
    wide = Hasher(["item"], bits=32).hash({"item": values}, stats=True)
    assert wide.stats is not None and wide.stats["distinct_buckets"] == 1000


def test_bad_input_names_the_field() -> None:
    h = Hasher(["user", "item"], bits=8)
    with pytest.raises(InvalidInputError, match="'item' is missing"):
        h.hash({"user": ["a"]})
    with pytest.raises(InvalidInputError, match="item"):
        h.hash({"user": ["a", "b"], "item": ["a"]})
    with pytest.raises(InvalidInputError, match="bits"):
        Hasher(["a"], bits=33)
    with pytest.raises(InvalidInputError, match="crosses"):
        Hasher(["a"], crosses=[("a", "nope")])
    bad = ("str", None, np.array([0, 99], dtype=np.int32), np.zeros(3, dtype=np.uint8), 0, 1)
    with pytest.raises(InvalidInputError, match="past the end"):
        _native.FeatureHasher(["a"]).hash_buffers([bad])
    with pytest.raises(InvalidInputError, match="column tuple"):
        _native.FeatureHasher(["a"]).hash_buffers([("nope",)])


def test_hashing_is_stable_across_processes() -> None:
    # Pinned values: checkpoints depend on them, so a change here breaks every saved model.
    out = Hasher(["user", "item"], bits=20, crosses=[("user", "item")]).hash({"user": ["u1"], "item": ["i1"]})
    seed_user = murmur3_32(b"user")
    assert out.indices[0] == murmur3_32(b"u1", seed_user) & 0xFFFFF
    assert (
        out.indices.tolist()
        == hash_rows({"user": ["u1"], "item": ["i1"]}, ["user", "item"], bits=20, crosses=[("user", "item")])[0]
    )
