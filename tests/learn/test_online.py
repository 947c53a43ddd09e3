"""Tests for rtrec.learn.online: exactly-once resume, the shared model checks, progressive validation,
learning and recovery from drift, text features and checkpoint robustness."""

from __future__ import annotations

import copy
import pickle
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch

from rtrec.config import Config, load_config
from rtrec.errors import CorruptDataError, InvalidInputError
from rtrec.events import EventLog
from rtrec.labels import FOLLOWUP, IMPRESSION
from rtrec.learn import OnlineLearner, Variant, default_variant
from rtrec.learn.metrics import auc
from rtrec.replay import replay_variants
from rtrec.sets import as_dict
from rtrec.sim import SimConfig, Simulator
from tests.learn.streams import events

SMALL = {
    "text": {"enabled": False},
    "features": {"bits": 14},
    # Replay mixing on (the default is off), so that resuming must restore the buffer and its generator.
    "learner": {"batch_size": 64, "replay_capacity": 5_000, "replay_ratio": 1.0},
}
# The shift comes after the last event: tastes are fixed throughout this stream.
SIM = SimConfig(n_users=30, n_items=40, n_topics=4, n_events=3_000, seed=7, shift_at=(0.95,))


@pytest.fixture
def cfg() -> Config:
    return load_config(overrides=copy.deepcopy(SMALL))


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Simulator, list[pa.RecordBatch], pa.Table]:
    """A simulated log read back through the event log, as the daemon and replay see it."""
    sim = Simulator(SIM)
    with EventLog.open(tmp_path_factory.mktemp("log") / "db.duckdb") as log:
        log.ingest(sim.generate())
        log.upsert_items(sim.catalog())
        return sim, list(log.tail(0, batch_size=250)), log.items()


def make_learner(cfg: Config, items: pa.Table, variants: list[Variant] | None = None) -> OnlineLearner:
    learner = OnlineLearner(cfg, variants=variants)
    learner.set_catalog(items)
    return learner


def all_variants(cfg: Config, n: int) -> list[Variant]:
    return replay_variants(cfg, n, text=False)


def scores(learner: OnlineLearner, users: list[str], items: list[str], now: float) -> dict[str, np.ndarray]:
    return {f"{v}/{u}": learner.score(u, items, now=now, variant=v)[1] for v in learner.trainers for u in users}


def assert_same_learner(a: OnlineLearner, b: OnlineLearner) -> None:
    assert (a.last_seq, a.events_seen, a.examples_seen, a.model_version) == (
        b.last_seq,
        b.events_seen,
        b.examples_seen,
        b.model_version,
    )
    assert list(a.trainers) == list(b.trainers)
    for name, ta in a.trainers.items():
        tb = b.trainers[name]
        if ta.model is not None:
            sa, sb = ta.model.state_dict(), tb.model.state_dict()
            assert list(sa) == list(sb)
            for key in sa:
                assert torch.equal(sa[key], sb[key]), f"{name}: parameter {key} differs"
        if ta.opt is not None:
            oa, ob = ta.opt.state_dict()["state"], tb.opt.state_dict()["state"]
            for key in oa:
                for k, v in oa[key].items():
                    assert torch.equal(v, ob[key][k]), f"{name}: optimizer state {key}.{k} differs"
        assert ta.examples == tb.examples and ta.updates == tb.updates
        assert ta.drift.state_dict() == tb.drift.state_dict()
        assert (len(ta.replay) if ta.replay is not None else 0) == (len(tb.replay) if tb.replay is not None else 0)
    fa, fb = a.featurizer, b.featurizer
    assert fa.users.ids == fb.users.ids and fa.items.ids == fb.items.ids
    np.testing.assert_array_equal(fa.item_counts.cnt, fb.item_counts.cnt)
    np.testing.assert_array_equal(fa.user_counts.npos, fb.user_counts.npos)
    assert fa.prior == fb.prior
    assert_same_state(a.labeler.state_dict(), b.labeler.state_dict())
    assert a.linear.state()[2:] == b.linear.state()[2:]
    np.testing.assert_array_equal(a.linear.state()[0], b.linear.state()[0])


def assert_same_state(a: Any, b: Any, where: str = "labeler") -> None:
    """Deep equality of plain state (dicts, lists, numpy arrays)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, np.ndarray | tuple | list) and any(isinstance(x, np.ndarray) for x in (a, b)):
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{k}]")
    else:
        assert a == b, where


def end_time(batches: list[pa.RecordBatch]) -> float:
    return float(batches[-1].column("ts").cast(pa.int64()).to_numpy().max()) / 1e6


# -- 1. resume equals uninterrupted -------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 5])
def test_resume_equals_uninterrupted(cfg: Config, stream: Any, tmp_path: Path, k: int) -> None:
    sim, batches, items = stream
    n = sum(b.num_rows for b in batches)
    variants = all_variants(cfg, n)
    a = make_learner(cfg, items, variants)
    for b in batches:
        a.learn(b)

    b_ = make_learner(cfg, items, variants)
    for b in batches[:k]:
        b_.learn(b)
    assert b_.labeler.pending > 0  # the cut leaves impressions waiting for their clicks
    path = b_.save(tmp_path / "ckpt" / "learner.ckpt")
    del b_
    resumed = OnlineLearner.load(path, cfg)
    assert resumed.last_seq == int(batches[k - 1].column("seq").to_numpy().max())
    for b in batches[k:]:
        resumed.learn(b)

    assert_same_learner(a, resumed)
    assert a.last_seq == resumed.last_seq == n
    now = end_time(batches)
    users, item_ids = [*sim.user_ids[:5], "never-seen"], sim.item_ids
    sa, sb = scores(a, users, item_ids, now), scores(resumed, users, item_ids, now)
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)
    # Also after the end-of-stream drain, which is predicted before it is learned too.
    da, db = a.drain(keep_predictions=True), resumed.drain(keep_predictions=True)
    assert da.examples > 0
    for name in a.trainers:
        p_a, p_b = np.concatenate(da.predictions[name]), np.concatenate(db.predictions[name])
        assert len(p_a) == da.examples
        np.testing.assert_array_equal(p_a, p_b)
    assert_same_learner(a, resumed)


def test_a_snapshot_written_after_more_learning_holds_the_state_it_was_taken_at(
    cfg: Config, stream: Any, tmp_path: Path
) -> None:
    """A checkpoint copies only what learning changes in place and shares the held impressions:
    learning on between the copy and the write (impressions labelled, slots freed and refilled,
    the arena compacted) must not reach what is written."""
    _, batches, items = stream
    k = 3
    a, b_ = make_learner(cfg, items), make_learner(cfg, items)
    for b in batches[:k]:
        a.learn(b)
        b_.learn(b)
    snap = a.snapshot()
    held = a.labeler.pending + a.labeler.retained
    for b in batches[k:]:
        a.learn(b)
    assert held > 0 and a.labeler.store.high > 0
    loaded = OnlineLearner.load(a.save(tmp_path / "snap.ckpt", snap), cfg)
    assert_same_learner(b_, loaded)
    del snap
    assert_same_learner(a, OnlineLearner.load(a.save(tmp_path / "now.ckpt"), cfg))


def test_relearning_the_stream_after_load_learns_nothing_twice(cfg: Config, stream: Any, tmp_path: Path) -> None:
    _, batches, items = stream
    k = 4
    a = make_learner(cfg, items)
    for b in batches:
        a.learn(b)
    b_ = make_learner(cfg, items)
    for b in batches[:k]:
        b_.learn(b)
    resumed = OnlineLearner.load(b_.save(tmp_path / "l.ckpt"), cfg)
    before = {k_: v.clone() for k_, v in resumed.trainers["rtrec"].model.state_dict().items()}  # type: ignore[union-attr]
    seen, examples = resumed.events_seen, resumed.examples_seen
    for b in batches[:k]:
        res = resumed.learn(b)
        assert res.events == 0 and res.examples == 0
    after = resumed.trainers["rtrec"].model.state_dict()  # type: ignore[union-attr]
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert (resumed.events_seen, resumed.examples_seen) == (seen, examples)
    # A batch that straddles last_seq: only its fresh part is learned.
    straddle = pa.Table.from_batches([batches[k - 1], batches[k]])
    res = resumed.learn(straddle)
    assert res.events == batches[k].num_rows
    for b in batches[k + 1 :]:
        resumed.learn(b)
    assert_same_learner(a, resumed)


# -- 2. the shared check suite --------------------------------------------------------------------------

KINDS = ["rtrec", "linear", "popularity", "static"]


def one_variant(cfg: Config, name: str) -> list[Variant]:
    return [v for v in all_variants(cfg, 1_000) if v.name == name]


@pytest.mark.parametrize("name", KINDS)
def test_check_save_load_round_trip(cfg: Config, stream: Any, tmp_path: Path, name: str) -> None:
    sim, batches, items = stream
    a = make_learner(cfg, items, one_variant(cfg, name))
    for b in batches[:6]:
        a.learn(b)
    b_ = OnlineLearner.load(a.save(tmp_path / "x.ckpt"), cfg)
    now = end_time(batches[:6])
    users = [*sim.user_ids[:3], "nobody"]
    items_ = [*sim.item_ids, "brand-new"]
    for u in users:
        ia, pa_ = a.score(u, items_, now=now)
        ib, pb = b_.score(u, items_, now=now)
        assert ia == ib
        np.testing.assert_array_equal(pa_, pb)
    ctx = {"device": "mobile"}
    np.testing.assert_array_equal(
        a.score(users[0], now=now, context=ctx)[1], b_.score(users[0], now=now, context=ctx)[1]
    )
    # And both keep learning identically.
    for b in batches[6:]:
        a.learn(b)
        b_.learn(b)
    assert_same_learner(a, b_)


def test_consumed_items_survive_a_checkpoint_and_so_do_those_of_an_older_checkpoint(
    cfg: Config, stream: Any, tmp_path: Path
) -> None:
    _sim, batches, items = stream
    a = make_learner(cfg, items, one_variant(cfg, KINDS[0]))
    for b in batches[:6]:
        a.learn(b)
    consumed = as_dict(a.featurizer.user_items)
    assert consumed and any(len(s) > 1 for s in consumed.values())
    b_ = OnlineLearner.load(a.save(tmp_path / "x.ckpt"), cfg)
    assert as_dict(b_.featurizer.user_items) == consumed
    # Checkpoints written before the flat form hold a sorted list per user.
    state = a.featurizer.state_dict()
    state["user_items"] = {u: sorted(s) for u, s in consumed.items()}
    b_.featurizer.load_state_dict(state)
    assert as_dict(b_.featurizer.user_items) == consumed


@pytest.mark.parametrize("name", KINDS)
def test_check_same_seed_same_result(cfg: Config, stream: Any, name: str) -> None:
    _sim, batches, items = stream
    a = make_learner(cfg, items, one_variant(cfg, name))
    b_ = make_learner(cfg, items, one_variant(cfg, name))
    torch.manual_seed(1234)  # the global generator must not matter
    for b in batches[:6]:
        ra, rb = a.learn(b, keep_predictions=True), b_.learn(b, keep_predictions=True)
        for pa_, pb in zip(ra.predictions[name], rb.predictions[name], strict=True):
            np.testing.assert_array_equal(pa_, pb)
        torch.rand(10)
    assert_same_learner(a, b_)
    now = end_time(batches[:6])
    np.testing.assert_array_equal(a.score("u1", now=now)[1], b_.score("u1", now=now)[1])


def test_check_other_seed_other_model(stream: Any) -> None:
    _, _, items = stream
    one = load_config(overrides=copy.deepcopy(SMALL))
    two = load_config(overrides={**copy.deepcopy(SMALL), "learner": {**SMALL["learner"], "seed": 1}})
    ma = make_learner(one, items).trainers["rtrec"].model
    mb = make_learner(two, items).trainers["rtrec"].model
    assert ma is not None and mb is not None
    sa, sb = ma.state_dict(), mb.state_dict()
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", KINDS)
def test_check_unseen_users_and_items(cfg: Config, stream: Any, name: str) -> None:
    sim, batches, items = stream
    fresh = make_learner(cfg, items, one_variant(cfg, name))
    trained = make_learner(cfg, items, one_variant(cfg, name))
    for b in batches[:4]:
        trained.learn(b)
    now = end_time(batches[:4])
    for learner in (fresh, trained):
        n_users = len(learner.featurizer.users)
        for user, cands in [("ghost", sim.item_ids[:5]), ("ghost", ["new-a", "new-b"]), (sim.user_ids[0], ["new-c"])]:
            ids, p = learner.score(user, cands, now=now, context={"device": "watch"})
            assert ids == cands and p.shape == (len(cands),)
            assert np.all(np.isfinite(p))
            if name != "popularity":
                assert np.all((p > 0) & (p < 1))
            else:
                assert np.all(p >= 0)
        assert len(learner.featurizer.users) == n_users  # scoring does not register users
        assert learner.score("ghost", [], now=now)[1].shape == (0,)
    # A completely empty learner (no catalog) scores too.
    empty = OnlineLearner(cfg, variants=one_variant(cfg, name))
    assert empty.score("ghost", now=now)[1].shape == (0,)
    ids, p = empty.score("ghost", ["x"], now=now)
    assert ids == ["x"] and np.isfinite(p).all()


def _deep_copy(t: pa.Table | pa.RecordBatch) -> pa.Table:
    return pa.Table.from_pylist(t.to_pylist(), schema=t.schema)


@pytest.mark.parametrize("name", KINDS)
def test_check_inputs_unchanged(cfg: Config, stream: Any, name: str) -> None:
    sim, batches, items = stream
    items_copy = _deep_copy(items)
    learner = make_learner(cfg, items, one_variant(cfg, name))
    for b in batches[:3]:
        before = _deep_copy(b)
        learner.learn(b)
        assert pa.Table.from_batches([b]).equals(before)
    table = pa.Table.from_batches(batches[3:5])
    before_t = _deep_copy(table)
    learner.learn(table)
    assert table.equals(before_t)
    assert items.equals(items_copy)
    cands, ctx = sim.item_ids[:4], {"device": "tablet", "page": "home"}
    cands_before, ctx_before = list(cands), dict(ctx)
    learner.score("u1", cands, ctx, now=end_time(batches[:5]))
    assert cands == cands_before and ctx == ctx_before


# -- 3. progressive validation -----------------------------------------------------------------------


def test_prediction_is_made_before_learning(cfg: Config) -> None:
    # One user always clicks i0 and always dismisses i1, one event per learn call.
    learner = OnlineLearner(cfg)
    p_click, p_dismiss = [], []
    for step in range(40):
        ev = events([(60 * step, "u0", "i0", "click"), (60 * step + 1, "u0", "i1", "dismiss")], 2 * step + 1)
        res = learner.learn(ev, keep_predictions=True)
        (probs,) = res.predictions["rtrec"]
        p_click.append(probs[0])
        p_dismiss.append(probs[1])
    # The first prediction knew nothing: near the prior (0.5), and no higher than later ones.
    assert abs(p_click[0] - 0.5) < 0.15
    assert np.mean(p_click[-10:]) > 0.9 > p_click[0]
    assert np.mean(p_dismiss[-10:]) < 0.1
    assert np.mean(p_click[5:10]) > np.mean(p_click[:3])
    # The history records the same (predict-then-learn) numbers.
    hist = np.concatenate([h["probs"] for h in learner.history])
    np.testing.assert_allclose(hist[0::2], np.array(p_click, dtype=np.float32))


def test_own_label_does_not_leak_into_its_prediction(cfg: Config) -> None:
    """Two streams that differ only in the label of their last example predict it identically."""
    rows = [(10 * s, f"u{s % 3}", f"i{s % 5}", "click" if s % 4 == 0 else "dismiss") for s in range(60)]
    preds = []
    for last in ("click", "dismiss"):
        learner = OnlineLearner(cfg)
        learner.learn(events(rows[:40]))
        # The last chunk holds earlier rows of the same user and item, and the row whose label differs.
        tail = [*rows[40:], (600, "u0", "i0", last)]
        res = learner.learn(events(tail, 41), keep_predictions=True)
        preds.append(np.concatenate(res.predictions["rtrec"]))
    np.testing.assert_array_equal(preds[0], preds[1])


# -- 4. learning works --------------------------------------------------------------------------------


def test_learns_the_simulated_tastes(cfg: Config, stream: Any) -> None:
    sim, batches, items = stream
    variants = [default_variant(cfg), Variant("popularity", kind="popularity", replay=False)]
    learner = make_learner(cfg, items, variants)
    labels: list[np.ndarray] = []
    learner.on_chunk = lambda b: labels.append(b.labels.copy())  # every learned example, in order
    preds: dict[str, list[np.ndarray]] = {}
    for b in batches:
        for name, ps in learner.learn(b, keep_predictions=True).predictions.items():
            preds.setdefault(name, []).extend(ps)
    y = np.concatenate(labels)
    p = np.concatenate(preds["rtrec"])
    assert len(y) > 1_500 and 0.05 < y.mean() < 0.8
    model_auc = auc(y, p)
    assert model_auc is not None and model_auc > 0.7
    pop_auc = auc(y, np.concatenate(preds["popularity"]))
    assert pop_auc is not None and model_auc > pop_auc  # personalisation beats popularity
    # For active users, items of their favourite topic now score higher than the rest.
    now = end_time(batches)
    assert sim.shift_times[0].timestamp() > now
    counts = {u: len(learner.seen_items(u)) for u in sim.user_ids}
    active = sorted(counts, key=lambda u: -counts[u])[:8]
    gaps = []
    for user in active:
        fav = sim.favourite_topic(user, now)
        ids, s = learner.score(user, sim.item_ids, now=now)
        is_fav = np.array([sim.topic_of(i) == fav for i in ids])
        gaps.append(s[is_fav].mean() - s[~is_fav].mean())
    assert np.mean(gaps) > 0.05
    assert sum(g > 0 for g in gaps) >= 6


# -- 5. drift ---------------------------------------------------------------------------------------------


def test_recovers_from_an_abrupt_preference_shift(tmp_path: Path, cfg: Config) -> None:
    sim = Simulator(
        SimConfig(
            n_users=30,
            n_items=40,
            n_topics=4,
            n_events=16_000,
            seed=3,
            shift_at=(0.2,),
            switch_fraction=0.8,
            fade_topics=0,
        )
    )
    with EventLog.open(tmp_path / "db.duckdb") as log:
        log.ingest(sim.generate())
        log.upsert_items(sim.catalog())
        batches, items = list(log.tail(0, batch_size=1000)), log.items()
    shift = sim.shift_times[0].timestamp()
    ts_all = np.concatenate([b.column("ts").cast(pa.int64()).to_numpy() for b in batches]) / 1e6
    pre_events = int((ts_all < shift).sum())
    # The static model stops learning at the shift: it shows how much the shift costs.
    static = replace(default_variant(cfg), name="static", train_examples=pre_events // 2, linear_blend=0.0)
    variants = [default_variant(cfg), static]
    learner = make_learner(cfg, items, variants)
    ts_chunks: list[np.ndarray] = []
    labels: list[np.ndarray] = []

    def on_chunk(b: Any) -> None:
        ts_chunks.append(b.ts.copy())
        labels.append(b.labels.copy())

    learner.on_chunk = on_chunk
    preds: dict[str, list[np.ndarray]] = {}
    for b in batches:
        for name, ps in learner.learn(b, keep_predictions=True).predictions.items():
            preds.setdefault(name, []).extend(ps)
    y = np.concatenate(labels)
    ts = np.concatenate(ts_chunks)
    p = np.concatenate(preds["rtrec"])
    k = int(np.searchsorted(ts, shift))
    post = len(y) - k
    assert k > 2_000 and post > 6_000

    def window(a: float, b: float, which: np.ndarray = p) -> float:
        s = slice(k + int(a * post), k + int(b * post))
        out = auc(y[s], which[s])
        assert out is not None
        return out

    before = auc(y[k // 2 : k], p[k // 2 : k])
    assert before is not None and before > 0.7
    just_after, late = window(0.0, 0.1), window(0.75, 1.0)
    assert just_after < before - 0.1  # the shift is real: the model was hurt
    assert late > before - 0.05  # ... and recovered
    assert late > just_after + 0.1
    # A model frozen before the shift still reads live counters and the per-example model's
    # logit, so it recovers partly; the learning model recovers clearly more.
    static_late = window(0.75, 1.0, np.concatenate(preds["static"]))
    assert late > static_late + 0.02


# -- text features (tiny GPT-2) ---------------------------------------------------------------------------


def test_learner_with_text_features(tmp_path: Path, stream: Any) -> None:
    from rtrec.text import load_encoder
    from rtrec.text.template import item_texts
    from rtrec.text.testing import build_tiny_gpt2

    folder = build_tiny_gpt2(tmp_path / "gpt2")
    cfg = load_config(
        overrides={
            **copy.deepcopy(SMALL),
            # Distillation is off by default; this test covers its path, so it turns it on.
            "text": {"enabled": True, "model": str(folder), "device": "cpu", "distill": True},
        }
    )
    sim, batches, items = stream
    enc = load_encoder(cfg.text)
    matrix = enc.encode(item_texts(items, cfg.text.template))
    ids = items.column("item_id").to_pylist()
    assert matrix.shape == (len(ids), enc.dim)
    learner = OnlineLearner(cfg, text_dim=enc.dim, variants=replay_variants(cfg, 1_000, text=True))
    assert learner.text_dim == enc.dim
    assert {"rtrec_no_text", "rtrec_no_distill"} <= set(learner.trainers)
    learner.set_catalog(items)
    learner.set_item_embeddings(ids, matrix)
    with pytest.raises(InvalidInputError, match="text dimension"):
        learner.set_item_embeddings(ids[:1], np.zeros((1, enc.dim + 1), np.float32))
    assert learner.trainers["rtrec"].scorer is not None
    assert learner.trainers["rtrec_no_distill"].scorer is None
    for b in batches[:6]:
        learner.learn(b)
    f = learner.featurizer
    assert f.has_text.sum() == len(ids)
    assert np.abs(f.user_vec).sum() > 0  # user interest vectors moved
    now = end_time(batches[:6])
    _ids_a, p = learner.score(sim.user_ids[0], now=now)
    assert np.isfinite(p).all() and np.all((p > 0) & (p < 1))
    # Text-aware scoring round-trips through a checkpoint.
    other = OnlineLearner.load(learner.save(tmp_path / "t.ckpt"), cfg)
    assert other.text_dim == enc.dim
    np.testing.assert_array_equal(p, other.score(sim.user_ids[0], now=now)[1])
    # Without text, embeddings are ignored.
    plain = OnlineLearner(load_config(overrides=copy.deepcopy(SMALL)), text_dim=enc.dim)
    assert plain.text_dim == 0
    plain.set_item_embeddings(ids, matrix)
    assert plain.featurizer.text_dim == 0


# -- 8. checkpoint robustness -------------------------------------------------------------------------


@pytest.fixture
def checkpoint(cfg: Config, stream: Any, tmp_path: Path) -> Path:
    _, batches, items = stream
    learner = make_learner(cfg, items)
    for b in batches[:2]:
        learner.learn(b)
    return learner.save(tmp_path / "ck" / "learner.ckpt")


def test_truncated_or_garbage_checkpoint_is_corrupt(cfg: Config, checkpoint: Path, tmp_path: Path) -> None:
    data = checkpoint.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "header": data[:100],
        "empty": b"",
        "garbage": b"\x00\x01not a checkpoint" * 100,
        "pickle": pickle.dumps({"hello": "world"}),
    }
    for name, blob in cases.items():
        bad = tmp_path / f"{name}.ckpt"
        bad.write_bytes(blob)
        with pytest.raises(CorruptDataError):
            OnlineLearner.load(bad, cfg)
    # A torch file of something else, and a checkpoint of another format version.
    other = tmp_path / "other.ckpt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CorruptDataError, match="not an rtrec checkpoint"):
        OnlineLearner.load(other, cfg)
    state = torch.load(checkpoint, weights_only=False)
    state["version"] = 99
    torch.save(state, other)
    with pytest.raises(CorruptDataError, match="version 99"):
        OnlineLearner.load(other, cfg)
    with pytest.raises(FileNotFoundError):
        OnlineLearner.load(tmp_path / "missing.ckpt", cfg)


def test_checkpoint_with_fields_missing_is_corrupt(cfg: Config, checkpoint: Path, tmp_path: Path) -> None:
    state = torch.load(checkpoint, weights_only=False)
    for damage in ("trainers", "featurizer", "last_seq"):
        broken = dict(state)
        if damage == "featurizer":
            broken[damage] = None
        else:
            del broken[damage]
        bad = tmp_path / f"partial-{damage}.ckpt"
        torch.save(broken, bad)
        with pytest.raises(CorruptDataError, match="damaged"):
            OnlineLearner.load(bad, cfg)


def test_checkpoint_with_other_features_config_is_refused(checkpoint: Path) -> None:
    for features in ({"bits": 15}, {"seed": 3}, {"crosses": [["user", "category"]]}):
        other = load_config(overrides={**copy.deepcopy(SMALL), "features": {**SMALL["features"], **features}})
        with pytest.raises(InvalidInputError, match=r"\[features\]") as info:
            OnlineLearner.load(checkpoint, other)
        assert info.value.hint
    # Settings outside [features] may change.
    relaxed = load_config(overrides={**copy.deepcopy(SMALL), "learner": {"lr": 0.5}})
    assert OnlineLearner.load(checkpoint, relaxed).last_seq > 0


def test_save_is_atomic(cfg: Config, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = checkpoint.parent
    assert sorted(p.name for p in folder.iterdir()) == ["learner.ckpt"]  # no temporary file left
    good = checkpoint.read_bytes()
    learner = OnlineLearner.load(checkpoint, cfg)
    learner.last_seq += 1

    def boom(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        learner.save(checkpoint)
    monkeypatch.undo()
    assert checkpoint.read_bytes() == good
    assert sorted(p.name for p in folder.iterdir()) == ["learner.ckpt"]
    assert OnlineLearner.load(checkpoint, cfg).last_seq == learner.last_seq - 1
    # Overwriting works and leaves one file.
    learner.save(checkpoint)
    assert OnlineLearner.load(checkpoint, cfg).last_seq == learner.last_seq
    assert sorted(p.name for p in folder.iterdir()) == ["learner.ckpt"]


def test_the_evaluator_ranks_each_example_before_anything_learns_it(cfg: Config, stream: Any) -> None:
    # The ranking evaluation of `rtrec replay` runs in these hooks: the per-example model, the
    # counters and the CTR model must not have seen the chunk's labels yet, and the candidate
    # sources hold the examples before the ranked one and not the ranked one itself.
    _, batches, items = stream
    learner = make_learner(cfg, items)
    seen: list[bool] = []
    ranked: list[bool] = []
    before: dict[str, Any] = {}

    class Hook:
        def pick(self, r: Any) -> np.ndarray:
            seen.append(
                np.array_equal(learner.linear.state()[0], before["linear"])
                and np.array_equal(learner.featurizer.item_counts.n, before["n"])
                and learner.model_version == before["version"]
            )
            return np.flatnonzero(r.labels >= 0.5)

        def rank(self, r: Any, row: int) -> None:
            u = int(r.user_idx[row])
            mine = r.user_idx == u
            earlier = set(r.item_idx[:row][mine[:row]].tolist())
            later = set(r.item_idx[row:][mine[row:]].tolist()) - earlier - before["held"].get(u, set())
            held = set(learner.retrieval.interacted.get(u).tolist())
            ranked.append(earlier <= held and not (later & held))

    learner.evaluator = Hook()
    bs = cfg.learner.batch_size
    for b in batches:
        for start in range(0, b.num_rows, bs):
            before["linear"] = learner.linear.state()[0].copy()
            before["n"] = learner.featurizer.item_counts.n.copy()
            before["version"] = learner.model_version
            before["held"] = as_dict(learner.retrieval.interacted)
            learner.learn(b.slice(start, bs))
    assert len(seen) > 10 and all(seen)
    assert len(ranked) > 10 and all(ranked)


def test_a_showing_counts_once_in_live_metrics_and_its_followups_are_learned(cfg: Config) -> None:
    learner = OnlineLearner(cfg)
    stream = events([(0, "u0", "i0", "impression"), (5, "u0", "i0", "click"), (9, "u0", "i0", "add_to_cart")])
    seen: list[Any] = []
    learner.on_chunk = lambda b: seen.append((b.labels.tolist(), b.origin.tolist(), b.weights.tolist()))
    res = learner.learn(stream, keep_predictions=True)
    # Two examples from the one showing (its click, then its add-to-cart), both with its features...
    assert res.examples == 2 and seen == [([1.0, 1.0], [IMPRESSION, FOLLOWUP], [1.0, 2.0])]
    p = res.predictions["rtrec"][0]
    assert p[0] == p[1]  # ... and the prediction made when it was shown
    # ... but live metrics count the showing once.
    assert sum(len(h["labels"]) for h in learner.history) == 1


def test_the_progressive_metrics_are_computed_with_the_learners_lock_free(cfg: Config) -> None:
    # Over an hour of history they sort millions of predictions: the learner must not wait.
    learner = OnlineLearner(cfg)
    learner.learn(events([(60 * s, f"u{s % 3}", f"i{s % 5}", "click" if s % 2 else "dismiss") for s in range(40)]))
    compute, free = learner.progress, []

    def probe(*args: Any) -> Any:
        def try_lock() -> None:
            got = learner._lock.acquire(timeout=1.0)
            free.append(got)
            if got:
                learner._lock.release()

        t = threading.Thread(target=try_lock)
        t.start()
        t.join()
        return compute(*args)

    learner.progress = probe  # type: ignore[assignment]
    assert learner.stats()["progressive"]["n"] > 0
    assert free == [True]
