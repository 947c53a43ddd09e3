from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from rtrec.config import TextConfig
from rtrec.errors import InvalidInputError
from rtrec.text import EmbeddingCache, TextEncoder, item_texts, load_encoder, text_hash

from .conftest import make_items

TEMPLATE = "{title}. {category}. {tags}. {description}"


class Spy:
    """Wraps an encoder and records what it was asked to encode."""

    def __init__(self, inner: TextEncoder, fail_on_call: int | None = None) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode(self, texts: list[str], **kw: Any) -> np.ndarray:
        self.calls.append(list(texts))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt
        return self.inner.encode(texts, **kw)

    @property
    def encoded(self) -> int:
        return sum(len(c) for c in self.calls)


def test_only_new_or_changed_items_are_encoded(con: duckdb.DuckDBPyConnection, tiny_gpt2: TextEncoder) -> None:
    spy = Spy(tiny_gpt2)
    cache = EmbeddingCache(con.cursor, spy, TEMPLATE)
    first = cache.refresh(make_items(6))
    assert (first["encoded"], first["cached"]) == (6, 0)
    assert first["items_per_s"] > 0
    _, before = cache.all()

    again = cache.refresh(make_items(6))
    assert (again["encoded"], again["cached"], again["items_per_s"]) == (0, 6, 0.0)
    assert spy.encoded == 6

    changed = make_items(8, title={2: "A brand new title"})  # item 2 edited, items 6 and 7 new
    stats = cache.refresh(changed)
    assert (stats["encoded"], stats["cached"]) == (3, 5)
    assert sorted(spy.calls[-1]) == sorted(item_texts(changed, TEMPLATE)[i] for i in (2, 6, 7))

    ids2, after = cache.all()
    assert ids2 == [f"i{i}" for i in range(8)]
    unchanged = [0, 1, 3, 4, 5]
    np.testing.assert_array_equal(after[unchanged], before[unchanged])
    assert np.abs(after[2] - before[2]).max() > 1e-3
    stored = dict(con.execute("SELECT item_id, text_hash FROM item_embeddings").fetchall())
    assert stored["i2"] == text_hash(item_texts(changed, TEMPLATE)[2])


def test_a_model_change_re_encodes_everything(
    con: duckdb.DuckDBPyConnection, tiny_gpt2: TextEncoder, tiny_gpt2_dir: Path
) -> None:
    items = make_items(5)
    EmbeddingCache(con.cursor, tiny_gpt2, TEMPLATE).refresh(items)
    last = load_encoder(TextConfig(model=str(tiny_gpt2_dir), device="cpu", pooling="last"))
    other = EmbeddingCache(con.cursor, last, TEMPLATE)
    assert other.refresh(items)["encoded"] == 5
    assert other.refresh(items)["encoded"] == 0
    assert EmbeddingCache(con.cursor, tiny_gpt2, TEMPLATE).refresh(items)["encoded"] == 0  # both kept
    models = con.execute("SELECT model, count(*) FROM item_embeddings GROUP BY model ORDER BY model").fetchall()
    assert [n for _, n in models] == [5, 5]
    assert len({m.split("|")[0] for m, _ in models}) == 1  # same weights, different pooling


def test_a_template_change_re_encodes(con: duckdb.DuckDBPyConnection, tiny_gpt2: TextEncoder) -> None:
    items = make_items(4)
    assert EmbeddingCache(con.cursor, tiny_gpt2, TEMPLATE).refresh(items)["encoded"] == 4
    assert EmbeddingCache(con.cursor, tiny_gpt2, "{title}").refresh(items)["encoded"] == 4


def test_lookup_returns_vectors_in_order_with_a_found_mask(
    con: duckdb.DuckDBPyConnection, tiny_gpt2: TextEncoder
) -> None:
    items = make_items(4)
    cache = EmbeddingCache(con.cursor, tiny_gpt2, TEMPLATE)
    cache.refresh(items)
    vectors, found = cache.lookup(["i3", "missing", "i0", "i3"])
    assert vectors.dtype == np.float32
    assert vectors.shape == (4, 32)
    assert found.tolist() == [True, False, True, True]
    assert not vectors[1].any()
    expected = tiny_gpt2.encode(item_texts(items, TEMPLATE))
    np.testing.assert_allclose(vectors[[0, 2, 3]], expected[[3, 0, 3]], atol=1e-5)
    empty, none = cache.lookup([])
    assert empty.shape == (0, 32)
    assert none.shape == (0,)


def test_empty_cache(con: duckdb.DuckDBPyConnection, tiny_gpt2: TextEncoder) -> None:
    cache = EmbeddingCache(con.cursor, tiny_gpt2, TEMPLATE)
    ids, vectors = cache.all()
    assert ids == []
    assert vectors.shape == (0, 32)
    assert cache.refresh(make_items(0))["encoded"] == 0


def test_progress_reports_done_out_of_total(con: duckdb.DuckDBPyConnection, tiny_gpt2: TextEncoder) -> None:
    seen: list[tuple[int, int]] = []
    EmbeddingCache(con.cursor, tiny_gpt2, TEMPLATE, chunk_size=3).refresh(
        make_items(7), progress=lambda d, t: seen.append((d, t))
    )
    assert seen[0] == (0, 7)
    assert seen[-1] == (7, 7)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_duplicate_ids_keep_the_last_row(con: duckdb.DuckDBPyConnection, tiny_gpt2: TextEncoder) -> None:
    items = pa.concat_tables([make_items(3), make_items(3, title={1: "Edited later"})])
    cache = EmbeddingCache(con.cursor, tiny_gpt2, TEMPLATE)
    assert cache.refresh(items)["encoded"] == 3
    assert cache.refresh(items)["encoded"] == 0
    (h,) = con.execute("SELECT text_hash FROM item_embeddings WHERE item_id = 'i1'").fetchone()
    assert h == text_hash(item_texts(make_items(3, title={1: "Edited later"}), TEMPLATE)[1])


def test_null_item_ids_are_rejected(con: duckdb.DuckDBPyConnection, tiny_gpt2: TextEncoder) -> None:
    items = make_items(2).set_column(0, "item_id", pa.array([None, "b"], pa.string()))
    with pytest.raises(InvalidInputError, match="item_id"):
        EmbeddingCache(con.cursor, tiny_gpt2, TEMPLATE).refresh(items)


def test_finished_chunks_survive_an_interrupted_refresh(db_path: Path, tiny_gpt2: TextEncoder) -> None:
    con = duckdb.connect(str(db_path))
    spy = Spy(tiny_gpt2, fail_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        EmbeddingCache(con.cursor, spy, TEMPLATE, chunk_size=3).refresh(make_items(6))
    con.close()
    reopened = duckdb.connect(str(db_path))
    assert reopened.execute("SELECT count(*) FROM item_embeddings").fetchone() == (3,)
    stats = EmbeddingCache(reopened.cursor, tiny_gpt2, TEMPLATE).refresh(make_items(6))
    assert (stats["encoded"], stats["cached"]) == (3, 3)
    reopened.close()


def test_a_failed_write_stops_the_refresh_and_keeps_earlier_chunks(db_path: Path, tiny_gpt2: TextEncoder) -> None:
    con = duckdb.connect(str(db_path))
    cache = EmbeddingCache(con.cursor, tiny_gpt2, TEMPLATE, chunk_size=2)
    real_write, calls = cache._write, []

    def write(*args: object) -> None:
        calls.append(len(args[0]))  # type: ignore[arg-type]
        if len(calls) == 2:
            raise OSError("disk full")
        real_write(*args)  # type: ignore[arg-type]

    cache._write = write  # type: ignore[method-assign]
    with pytest.raises(OSError, match="disk full"):
        cache.refresh(make_items(6))
    assert calls == [2, 2]  # the third chunk was encoded, but its write never started
    assert con.execute("SELECT count(*) FROM item_embeddings").fetchone() == (2,)
    con.close()
