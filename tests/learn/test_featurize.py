"""Tests for rtrec.learn.featurize: causal counters and target encodings, CSR batches, candidates."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtrec.config import Config, load_config
from rtrec.events import EXAMPLE_SCHEMA
from rtrec.learn.columns import BASE_DENSE, TEXT_SIM, dense_names, epoch_seconds
from rtrec.learn.counters import IdMap
from rtrec.learn.featurize import Featurizer, resolved_before
from rtrec.sets import as_dict

HALF_LIFE = 3600.0
RECENT_HALF_LIFE = 600.0
T0 = 1_700_000_000.0
CATS = {"i0": "shoes", "i1": "shoes", "i2": "books", "i3": None}
TAGS: dict[str, list[str] | None] = {"i0": ["red", "sale"], "i1": ["blue"], "i2": ["sale"], "i3": None}


def make_cfg(**features: Any) -> Config:
    return load_config(
        overrides={
            "text": {"enabled": False},
            "learner": {"counter_half_life_s": HALF_LIFE, "recent_half_life_s": RECENT_HALF_LIFE},
            "features": {"bits": 20, **features},
        }
    )


def catalog() -> pa.Table:
    ids = list(CATS)
    return pa.table(
        {
            "item_id": ids,
            "category": pa.array([CATS[i] for i in ids], pa.string()),
            "tags": pa.array([TAGS[i] for i in ids], pa.list_(pa.string())),
        }
    )


def examples(rows: list[tuple[str, str, float, float]], context: list[str | None] | None = None) -> pa.Table:
    """Labelled examples (user, item, epoch seconds, label) in the labeler's output schema."""
    n = len(rows)
    return pa.Table.from_pydict(
        {
            "seq": list(range(1, n + 1)),
            "event_id": [f"e{k}" for k in range(n)],
            "ts": [round(t * 1e6) for _, _, t, _ in rows],
            "user_id": [u for u, _, _, _ in rows],
            "item_id": [i for _, i, _, _ in rows],
            "event_type": ["click" if y else "dismiss" for _, _, _, y in rows],
            "value": [None] * n,
            "request_id": [None] * n,
            "propensity": [None] * n,
            "context": context if context is not None else [None] * n,
            "label": [float(y) for _, _, _, y in rows],
            "weight": [1.0] * n,
            "origin": ["event"] * n,
        },
        schema=EXAMPLE_SCHEMA,
    )


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


class Sequential:
    """What a learner that handles one row at a time would read: the pure-Python reference.

    Within a batch every row sees the stored state plus each earlier row of the batch
    (undecayed: they share the batch's time), never itself or a later row. After the batch,
    the stored state moves forward as :meth:`Featurizer.update` describes.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0, 0.0])
        self.cross: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.prior, self.prior_n = 0.5, 0.0

    @staticmethod
    def pairs(user: str, item: str) -> dict[str, list[tuple[str, str, str]]]:
        cat, tags = CATS.get(item), TAGS.get(item)
        return {
            "user_x_category": [("c", user, cat)] if cat is not None else [],
            "user_x_tags": [("t", user, t) for t in tags or []],
        }

    def all_pairs(self, user: str, item: str) -> list[tuple[str, str, str]]:
        return [key for keys in self.pairs(user, item).values() for key in keys]

    def batch(self, rows: list[tuple[str, str, float, float]]) -> np.ndarray:
        out = []
        earlier: dict[Any, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for user, item, ts, y in rows:
            feats: dict[str, float] = {}
            for kind, key in (("item", item), ("user", user), ("user_recent", user)):
                cnt, pos, last, n, npos = self.counts[(kind, key)]
                decay = 2.0 ** (-max(ts - last, 0.0) / self.half_life(kind))
                e_cnt, e_pos = earlier[("user" if kind == "user_recent" else kind, key)]
                cnt, pos = cnt * decay + e_cnt, pos * decay + e_pos
                n, npos = n + e_cnt, npos + e_pos
                if kind == "user_recent":
                    feats["user_ctr_recent"] = logit((pos + 2 * self.prior) / (cnt + 2))
                    continue
                feats[f"{kind}_pop"] = math.log1p(cnt)
                feats[f"{kind}_ctr"] = logit((pos + 2 * self.prior) / (cnt + 2))
                feats[f"{kind}_ctr_all"] = logit((npos + 2 * self.prior) / (n + 2))
            for name, keys in self.pairs(user, item).items():
                ctrs = []
                for key in keys:
                    n, npos = self.cross[key]
                    e_n, e_pos = earlier[key]
                    ctrs.append((npos + e_pos + 2 * self.prior) / (n + e_n + 2))
                feats[f"{name}_ctr"] = logit(sum(ctrs) / len(ctrs)) if ctrs else logit(self.prior)
            out.append(feats)
            for key in [("item", item), ("user", user), *self.all_pairs(user, item)]:
                earlier[key][0] += 1
                earlier[key][1] += y
        self._update(rows)
        names = [n for n in dense_names(make_cfg()) if not n.startswith("text_") and n != "linear_logit"]
        return np.array([[f[n] for n in names] for f in out])

    @staticmethod
    def half_life(kind: str) -> float:
        return RECENT_HALF_LIFE if kind == "user_recent" else HALF_LIFE

    def _update(self, rows: list[tuple[str, str, float, float]]) -> None:
        now = max(ts for _, _, ts, _ in rows)
        kinds = ("item", "user", "user_recent")
        touched = {(k, key) for u, i, _, _ in rows for k, key in zip(kinds, (i, u, u), strict=True)}
        for key in touched:
            c = self.counts[key]
            decay = 2.0 ** (-max(now - c[2], 0.0) / self.half_life(key[0]))
            c[0], c[1], c[2] = c[0] * decay, c[1] * decay, now
        for user, item, ts, y in rows:
            for key in zip(kinds, (item, user, user), strict=True):
                w = 2.0 ** (-(now - ts) / self.half_life(key[0]))
                c = self.counts[key]
                c[0] += w
                c[1] += w * y
                c[3] += 1
                c[4] += y
            for key in self.all_pairs(user, item):
                self.cross[key][0] += 1
                self.cross[key][1] += y
        n = len(rows)
        self.prior_n = min(self.prior_n + n, 10_000.0)
        mean = sum(y for *_, y in rows) / n
        self.prior += (mean - self.prior) * n / self.prior_n


row_st = st.tuples(st.sampled_from(["u0", "u1", "u2"]), st.sampled_from(list(CATS)), st.booleans())
batches_st = st.lists(st.lists(row_st, min_size=1, max_size=12), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None)
@given(batches=batches_st, gaps=st.lists(st.floats(0, 3 * HALF_LIFE), min_size=4, max_size=4))
def test_counters_and_cross_encodings_match_a_sequential_reference(
    batches: list[list[tuple[str, str, bool]]], gaps: list[float]
) -> None:
    f = Featurizer(make_cfg())
    f.set_catalog(catalog())
    ref = Sequential()
    t = T0
    for rows_, gap in zip(batches, gaps, strict=False):
        t += gap
        # One timestamp per batch: rows of a batch see each other undecayed, as the reference does.
        rows = [(u, i, t, float(y)) for u, i, y in rows_]
        b = f.transform(examples(rows))
        expected = ref.batch(rows)
        got = np.delete(b.dense, BASE_DENSE.index("linear_logit"), axis=1)
        np.testing.assert_allclose(got[:, : expected.shape[1]], expected, rtol=1e-5, atol=1e-5)
        assert np.all(b.dense[:, TEXT_SIM] == 0.0)
        f.update(b)
        assert f.prior == pytest.approx(ref.prior)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 30)), max_size=30),
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 30), st.booleans()), max_size=30),
)
def test_resolved_before_against_brute_force(
    reads: list[tuple[int, int]], resolved: list[tuple[int, int, bool]]
) -> None:
    # Reads sit on odd order keys and resolutions on even ones, as the labeller places them.
    r_idx = np.array([i for i, _ in reads], dtype=np.int64)
    r_key = np.array([2 * k + 1 for _, k in reads], dtype=np.int64)
    s_idx = np.array([i for i, _, _ in resolved], dtype=np.int64)
    s_key = np.array([2 * k for _, k, _ in resolved], dtype=np.int64)
    s_y = np.array([float(y) for *_, y in resolved])
    cnt, pos = resolved_before(r_idx, r_key, s_idx, s_key, s_y)
    for j in range(len(reads)):
        before = [k for k in range(len(resolved)) if s_idx[k] == r_idx[j] and s_key[k] < r_key[j]]
        assert cnt[j] == len(before)
        assert pos[j] == sum(s_y[k] for k in before)


def test_a_row_never_sees_its_own_label_or_later_rows() -> None:
    rows = [("u0", "i0", T0, 1.0), ("u0", "i0", T0, 0.0), ("u1", "i0", T0, 1.0), ("u0", "i2", T0, 1.0)]
    base = Featurizer(make_cfg())
    base.set_catalog(catalog())
    warm = examples([("u0", "i0", T0 - 60, 1.0), ("u1", "i2", T0 - 60, 0.0)])
    base.update(base.transform(warm))
    state = base.state_dict()
    ref = base.transform(examples(rows)).dense
    for r in range(len(rows)):
        flipped = list(rows)
        u, i, t, y = flipped[r]
        flipped[r] = (u, i, t, 1.0 - y)
        f = Featurizer(make_cfg())
        f.set_catalog(catalog())
        f.load_state_dict(state)
        dense = f.transform(examples(flipped)).dense
        # Rows up to r are unchanged; some later row sharing a user or item moves.
        np.testing.assert_array_equal(dense[: r + 1], ref[: r + 1])
    assert not np.array_equal(
        ref[1], Featurizer(make_cfg()).transform(examples([rows[1]])).dense[0]
    )  # ... and row 1 does see row 0


def test_duplicate_tags_do_not_leak_the_rows_own_label() -> None:
    items = pa.table({"item_id": ["i9"], "category": ["x"], "tags": pa.array([["sale", "sale"]])})
    dense = []
    for y in (0.0, 1.0):
        f = Featurizer(make_cfg())
        f.set_catalog(items)
        dense.append(f.transform(examples([("u0", "i9", T0, y)])).dense[0])
    np.testing.assert_array_equal(dense[0], dense[1])


def test_batch_offsets_are_csr_and_take_keeps_rows() -> None:
    f = Featurizer(make_cfg())
    f.set_catalog(catalog())
    ctx = [json.dumps({"device": "mobile"}), None, "not json", json.dumps({"device": "tablet"}), None]
    rows = [("u0", "i0", T0, 1.0), ("u1", "i3", T0 + 1, 0.0), ("u0", "i1", T0 + 2, 0.0), ("u2", "i2", T0 + 3, 1.0)]
    rows.append(("u1", "unknown-item", T0 + 4, 1.0))
    b = f.transform(examples(rows, ctx))
    off = b.offsets
    assert off.dtype == np.int64 and len(off) == len(b) + 1 == 6
    assert off[0] == 0 and off[-1] == len(b.indices) and np.all(np.diff(off) >= 1)
    assert b.indices.min() >= 0 and b.indices.max() < 1 << 20
    counts = np.diff(off)
    assert counts[0] > counts[1]  # i0 has a category, two tags and a device; i3 none of them
    assert b.dense.shape == (5, len(dense_names(make_cfg())))
    assert b.dense.dtype == np.float32 and np.isfinite(b.dense).all()
    assert b.seq.tolist() == [1, 2, 3, 4, 5]
    assert f.items.ids[-1] == "unknown-item"  # new items get an index on first sight
    rows_ = np.array([3, 0, 3])
    t = b.take(rows_)
    assert np.array_equal(t.offsets, np.concatenate([[0], np.cumsum(counts[rows_])]))
    for k, r in enumerate(rows_.tolist()):
        np.testing.assert_array_equal(t.indices[t.offsets[k] : t.offsets[k + 1]], b.indices[off[r] : off[r + 1]])
        np.testing.assert_array_equal(t.dense[k], b.dense[r])
    assert t.labels.tolist() == [1.0, 1.0, 1.0] and t.seq.tolist() == [4, 1, 4]


def test_context_namespace_changes_the_hashed_features() -> None:
    f = Featurizer(make_cfg())
    f.set_catalog(catalog())
    rows = [("u0", "i0", T0, 1.0)] * 3
    b = f.transform(examples(rows, [json.dumps({"device": "mobile"}), json.dumps({"device": "tablet"}), None]))
    first, second, third = (set(b.indices[b.offsets[k] : b.offsets[k + 1]].tolist()) for k in range(3))
    assert first != second and third < first and third < second


def test_candidates_for_an_unknown_user() -> None:
    f = Featurizer(make_cfg())
    f.set_catalog(catalog())
    b = f.transform(examples([("u0", "i0", T0, 1.0), ("u0", "i1", T0, 1.0), ("u1", "i2", T0, 0.0)]))
    f.update(b)
    n_users = len(f.users)
    idx = np.arange(len(f.items), dtype=np.int64)
    c = f.candidates("stranger", idx, T0 + 10)
    assert len(f.users) == n_users  # no state for the stranger
    assert len(c) == len(idx) and np.array_equal(c.item_idx, idx)
    assert c.offsets[0] == 0 and c.offsets[-1] == len(c.indices) and len(c.offsets) == len(idx) + 1
    user_cols = [BASE_DENSE.index(n) for n in ("user_pop", "user_ctr", "user_ctr_all")]
    assert np.all(c.dense[:, user_cols[0]] == 0.0)
    np.testing.assert_allclose(c.dense[:, user_cols[1]], logit(f.prior), rtol=1e-5)
    np.testing.assert_allclose(c.dense[:, user_cols[2]], logit(f.prior), rtol=1e-5)
    assert np.all(c.user_n == 0)
    # Item-side features are those of the items, whoever asks.
    known = f.candidates("u0", idx, T0 + 10)
    item_cols = [BASE_DENSE.index(n) for n in ("item_pop", "item_ctr", "item_ctr_all")]
    np.testing.assert_array_equal(c.dense[:, item_cols], known.dense[:, item_cols])
    assert not np.array_equal(c.dense[:, user_cols], known.dense[:, user_cols])
    assert known.user_n.tolist() == [2] * len(idx)
    # A featurizer that has seen nobody at all.
    empty = Featurizer(make_cfg())
    empty.set_catalog(catalog())
    e = empty.candidates("stranger", np.arange(2, dtype=np.int64), T0)
    assert np.isfinite(e.dense).all() and len(empty.users) == 0


def test_state_dict_round_trip() -> None:
    rows = [("u0", "i0", T0, 1.0), ("u1", "i2", T0 + 5, 0.0), ("u0", "i3", T0 + 9, 1.0)]
    a = Featurizer(make_cfg())
    a.set_catalog(catalog())
    a.update(a.transform(examples(rows)))
    b = Featurizer(make_cfg())
    b.load_state_dict(a.state_dict())
    later = [("u0", "i2", T0 + 600, 1.0), ("u2", "i0", T0 + 600, 0.0)]
    ba, bb = a.transform(examples(later)), b.transform(examples(later))
    np.testing.assert_array_equal(ba.dense, bb.dense)
    np.testing.assert_array_equal(ba.indices, bb.indices)
    assert as_dict(a.user_items) == as_dict(b.user_items)


def test_epoch_seconds_units() -> None:
    for unit, scale in (("s", 1), ("ms", 1_000), ("us", 1_000_000), ("ns", 1_000_000_000)):
        arr = pa.array([1_700_000_000 * scale, 1_700_000_001 * scale], pa.timestamp(unit))
        assert epoch_seconds(arr).tolist() == [1_700_000_000.0, 1_700_000_001.0]
    tz = pa.array([1_700_000_000_000_000], pa.timestamp("us", tz="UTC"))
    assert epoch_seconds(pa.chunked_array([tz])).tolist() == [1_700_000_000.0]


def test_text_neighbour_ctr_carries_feedback_to_items_with_similar_text() -> None:
    cfg = load_config(overrides={"text": {"enabled": True}, "learner": {"counter_half_life_s": HALF_LIFE}})
    f = Featurizer(cfg)
    f.set_catalog(catalog())
    # i0 and i1 have near-identical text; i2 is unrelated; i3 has no text at all.
    vecs = np.array([[1.0, 0.0, 0.0], [0.99, 0.141, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    f.set_item_embeddings(["i0", "i1", "i2"], vecs / np.linalg.norm(vecs, axis=1, keepdims=True))
    rows = [(f"u{k}", "i0", T0 + k, 1.0) for k in range(30)] + [(f"u{k}", "i2", T0 + k, 0.0) for k in range(30)]
    f.update(f.transform(examples(rows)))
    probe = f.candidates("new-user", np.array([f.items.get(i) for i in ("i1", "i2", "i3")]), T0 + 100)
    nbr = probe.dense[:, dense_names(cfg).index("text_nbr_ctr")]
    # i1 inherits i0's clicks; i2's neighbour is i0 too (the only other item with text), but
    # weighted by zero similarity, so it stays at the prior; i3 has no text.
    assert nbr[0] > logit(f.prior) + 1.0
    assert nbr[1] == pytest.approx(logit(f.prior), abs=1e-4)
    assert nbr[2] == pytest.approx(logit(f.prior), abs=1e-4)


def test_text_similarity_is_a_cosine_on_centred_embeddings() -> None:
    cfg = load_config(overrides={"text": {"enabled": True}})
    f = Featurizer(cfg)
    f.set_catalog(catalog())
    # A large shared direction (every item is "a product") plus what sets each item apart.
    common = np.array([3.0, 0.0, 0.0, 0.0], dtype=np.float32)
    vecs = common + np.array([[0, 1, 0, 0], [0, 0.9, 0.1, 0], [0, 0, 0, 1]], dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    f.set_item_embeddings(["i0", "i1", "i2"], vecs)
    idx = np.array([f.items.get(i) for i in ("i0", "i1", "i2", "i3")])
    centred = f.centred_text(idx)
    np.testing.assert_allclose(np.linalg.norm(centred[:3], axis=1), 1.0, rtol=1e-5)
    assert not centred[3].any()  # i3 has no text
    assert vecs[0] @ vecs[2] > 0.8  # raw cosines are all high ...
    assert centred[0] @ centred[2] < 0.0  # ... centred ones tell the items apart
    f.update(f.transform(examples([("u0", "i0", T0, 1.0)])))
    probe = f.transform(examples([("u0", i, T0 + 1, 0.0) for i in ("i0", "i1", "i2", "i3")]))
    sim = probe.dense[:, TEXT_SIM]
    assert sim[0] == pytest.approx(1.0, abs=1e-5)  # one click on i0: the interest vector is i0's direction
    assert sim[0] > sim[1] > 0.5 > 0.0 > sim[2] >= -1.0
    assert sim[3] == 0.0


def test_new_users_and_items_are_registered_only_once_their_counters_have_rows() -> None:
    # Recommend reads without the learner's lock: a user or item it finds known must have rows.
    f = Featurizer(make_cfg())
    seen: list[tuple[int, int]] = []

    class Watch:
        def __init__(self, registry: Any, rows: Any) -> None:
            self.registry, self.rows = registry, rows

        def __getattr__(self, name: str) -> Any:
            return getattr(self.registry, name)

        def __len__(self) -> int:
            return len(self.registry)

        def add_column(self, col: pa.Array, reserve: Any = None) -> np.ndarray:
            out = self.registry.add_column(col, reserve)
            seen.append((int(out.max()), len(self.rows())))  # rows readers find at that moment
            return out

    f.users = Watch(f.users, lambda: f.user_counts.n)  # type: ignore[assignment]
    f.items = Watch(f.items, lambda: f.item_counts.n)  # type: ignore[assignment]
    f.ids(pa.array(["u1", "u2"]), pa.array(["i1", "i2"]))
    f.ids(pa.array([f"u{k}" for k in range(3, 200)]), pa.array([f"i{k}" for k in range(3, 200)]))
    assert len(seen) == 4 and all(top < rows for top, rows in seen)


def test_an_id_map_reserves_rows_for_new_ids_before_any_of_them_can_be_found() -> None:
    ids = IdMap(["a", "b"])
    calls: list[tuple[int, bool]] = []

    def reserve(n: int) -> None:
        calls.append((n, any(ids.get(k) is not None for k in ("c", "d"))))

    out = ids.add_all(["b", "c", "c", "d", "a"], reserve)
    assert out.tolist() == [1, 2, 2, 3, 0]
    assert calls == [(4, False)]  # called once, with the count to hold, before c and d were findable
    ids.add_all(["a", "d"], reserve)
    assert len(calls) == 1  # nothing new: nothing to reserve
