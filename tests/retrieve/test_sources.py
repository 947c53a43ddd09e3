"""Candidate sources, the ranker over them and ``similar``, on a learner with a small catalog."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from rtrec import _native
from rtrec.config import load_config
from rtrec.errors import CorruptDataError, InvalidInputError
from rtrec.learn import OnlineLearner
from rtrec.rank import ListRanker, pipeline
from rtrec.retrieve import FEATURES, arrays, sources
from rtrec.retrieve.ann import IVFIndex
from tests.learn.streams import T0, events

CATS = ("horror", "comedy", "drama")
PER = 12


def catalog() -> pa.Table:
    ids = [f"{c}-{i}" for c in CATS for i in range(PER)] + ["horror-new"]
    cats = [c for c in CATS for _ in range(PER)] + ["horror"]
    return pa.table({"item_id": ids, "category": cats})


def embeddings(ids: list[str]) -> np.ndarray:
    """Items of one category point one way (plus noise): text alone tells the categories apart."""
    rng = np.random.default_rng(0)
    base = {c: np.eye(8, dtype=np.float32)[k] for k, c in enumerate(CATS)}
    return np.stack([base[i.split("-")[0]] + 0.1 * rng.standard_normal(8).astype(np.float32) for i in ids])


@pytest.fixture
def learner() -> OnlineLearner:
    return make_learner()


def make_learner(**retrieve: int) -> OnlineLearner:
    cfg = load_config(overrides={"text": {"enabled": True}, "retrieve": {"per_source": 10, "fresh": 4, **retrieve}})
    learner = OnlineLearner(cfg, text_dim=8)
    items = catalog()
    learner.set_catalog(items)
    ids = items.column("item_id").to_pylist()
    learner.set_item_embeddings(ids, embeddings(ids))
    # Ten users each engage with the items of one category, in order; comedy is the busiest.
    rows = []
    t = 0
    for u in range(10):
        cat = CATS[0] if u < 3 else (CATS[1] if u < 8 else CATS[2])
        for i in range(PER):
            rows.append((t, f"u{u}", f"{cat}-{i}", "click"))
            t += 1
    learner.learn(events(rows))
    return learner


def names(learner: OnlineLearner, idx: np.ndarray) -> list[str]:
    return [learner.featurizer.items.ids[i] for i in idx.tolist()]


def test_each_source_proposes_what_it_stands_for(learner: OnlineLearner) -> None:
    f = learner.featurizer
    # A new fan has engaged with the first four horror items.
    learner.learn(events([(500 + k, "fan", f"horror-{k}", "click") for k in range(4)], start_seq=10_000))
    fan = f.users.get("fan")
    now = float(T0 + 600)
    c = learner.retrieval.retrieve(fan, now, pipeline.exclusions(learner, fan, point_in_time=True))
    covisit = names(learner, c.lists["covisit"])
    assert covisit and all(i.startswith("horror-") for i in covisit)  # co-engaged by the horror users
    assert not set(covisit) & {f"horror-{k}" for k in range(4)}  # not what the fan already engaged with
    content = names(learner, c.lists["content"])
    assert "horror-new" in content  # no feedback at all: reached by its text only
    assert all(i.startswith("horror") for i in content[:5])
    trending = names(learner, c.lists["trending"])
    assert trending[0].startswith("comedy")  # the most engaged overall leads
    assert any(i.startswith("horror") for i in trending)  # and the fan's own category is in
    assert "horror-new" in names(learner, c.lists["fresh"])  # newest, under-exposed
    # The merged set holds each once, with every source that proposed it.
    assert len(set(c.items.tolist())) == len(c.items)
    row = c.items.tolist().index(f.items.get("horror-new"))
    assert {"content", "fresh"} <= set(c.sources_of(row))


@pytest.mark.parametrize("category", [None, "horror"])
def test_a_requests_merge_in_python_equals_the_numpy_one(
    learner: OnlineLearner, monkeypatch: pytest.MonkeyPatch, category: str | None
) -> None:
    learner.learn(events([(500 + k, "fan", f"horror-{k}", "click") for k in range(4)], start_seq=10_000))
    fan = learner.featurizer.users.get("fan")
    r = learner.retrieval

    def retrieve(small: int) -> sources.Candidates:
        monkeypatch.setattr(sources, "SMALL", small)
        monkeypatch.setattr(arrays, "SMALL", small)
        r._rng = np.random.default_rng(7)  # the same fresh draw both times
        return r.retrieve(fan, float(T0 + 600), pipeline.exclusions(learner, fan), category=category)

    python_path, numpy_path = retrieve(sources.SMALL), retrieve(0)
    np.testing.assert_array_equal(python_path.items, numpy_path.items)
    np.testing.assert_array_equal(python_path.mask, numpy_path.mask)
    assert python_path.lists.keys() == numpy_path.lists.keys()
    for name, items in python_path.lists.items():
        np.testing.assert_array_equal(items, numpy_path.lists[name], err_msg=name)
    assert len(python_path.lists["fresh"]) and python_path.mask.all()


def test_the_served_ranking_puts_the_users_category_first(learner: OnlineLearner) -> None:
    learner.learn(events([(500 + k, "fan", f"horror-{k}", "click") for k in range(4)], start_seq=10_000))
    ranked = pipeline.rank(learner, "fan", float(T0 + 600))
    assert ranked is not None
    top = names(learner, ranked.cands.items[ranked.order()[:5]])
    assert all(i.startswith("horror") for i in top), top
    x, w = ranked.x, learner.rankers[learner.main]
    assert x.shape == (len(ranked.cands), len(FEATURES))
    np.testing.assert_allclose(w.contributions(x).sum(axis=1), ranked.scores, rtol=1e-6)


def test_filters_and_exclusions(learner: OnlineLearner) -> None:
    f = learner.featurizer
    fan = f.users.get("u0")
    drama = pipeline.rank(learner, "u0", float(T0 + 600), category="drama")
    assert drama is not None and all(i.startswith("drama") for i in names(learner, drama.cands.items))
    skip = np.array([f.items.get("comedy-0"), f.items.get("horror-new")], np.int64)
    c = learner.retrieval.retrieve(fan, float(T0 + 600), skip, at_least=10_000)
    got = set(names(learner, c.items))
    assert "comedy-0" not in got and "horror-new" not in got
    assert len(got) == len(f.items) - 2  # the rest of the catalog fills in when asked for
    assert ["catalog"] in [c.sources_of(r) for r in range(len(c))]  # no source proposed those


def test_similar_blends_covisitation_and_text(learner: OnlineLearner) -> None:
    f = learner.featurizer
    sim = learner.retrieval.similar(f.items.get("comedy-3"), 5)
    assert len(sim) == 5 and all(names(learner, np.array([i]))[0].startswith("comedy") for i, _, _ in sim)
    assert any("covisit" in s for _, _, s in sim)
    fresh = learner.retrieval.similar(f.items.get("horror-new"), 5)  # never engaged with
    assert fresh and all(s == "text" for _, _, s in fresh)
    assert all(names(learner, np.array([i]))[0].startswith("horror") for i, _, _ in fresh)


def test_sources_survive_a_checkpoint(learner: OnlineLearner, tmp_path) -> None:
    path = learner.save(tmp_path / "l.ckpt")
    back = OnlineLearner.load(path, learner.cfg)
    u = learner.featurizer.users.get("u0")
    a = learner.retrieval.retrieve(u, float(T0 + 600), np.zeros(0, np.int64))
    b = back.retrieval.retrieve(u, float(T0 + 600), np.zeros(0, np.int64))
    for s in ("covisit", "content", "trending"):
        np.testing.assert_array_equal(a.lists[s], b.lists[s])
    np.testing.assert_array_equal(back.rankers["rtrec"].w, learner.rankers["rtrec"].w)


def test_a_resumed_home_says_when_its_covisitation_settings_differ_from_the_config(
    learner: OnlineLearner, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    path = learner.save(tmp_path / "l.ckpt")
    with caplog.at_level("WARNING", logger="rtrec.learn"):
        OnlineLearner.load(path, learner.cfg)
    assert "co-visitation" not in caplog.text
    cfg = load_config(
        overrides={"text": {"enabled": True}, "retrieve": {"per_source": 10, "fresh": 4, "covisit_half_life_s": 3600.0}}
    )
    with caplog.at_level("WARNING", logger="rtrec.learn"):
        back = OnlineLearner.load(path, cfg)
    assert "co-visitation keeps the settings it was built with (32, 20, 2592000.0)" in caplog.text
    assert back.retrieval.covisit.settings == (32, 20, 30 * 86400.0)  # the state's own, as the warning says


def test_ranker_learns_which_feature_predicts_the_choice() -> None:
    rng = np.random.default_rng(0)
    r = ListRanker(lr=0.1, text=False)
    k = FEATURES.index("popularity")  # no prior weight: only learning can give it one
    assert r.w[k] == 0.0
    for _ in range(300):
        x = rng.standard_normal((10, len(FEATURES))).astype(np.float32)
        x[0, k] = x[:, k].max() + 1.0  # the chosen item always has the highest value
        r.learn(x)
    assert r.w[k] > 0.5
    assert r.w[FEATURES.index("content_user")] == 0.0  # text features stay off without text


def test_native_covisitation_checks_its_input() -> None:
    cv = _native.CoVisitation(4, 3, 60.0)
    cv.observe(np.array([1, 1]), np.array([0, 1]), np.array([0.0, 1.0]), np.ones(2, np.float32))
    assert cv.history(1).tolist() == [0, 1] and cv.neighbours(0, 5)[0].tolist() == [1]
    with pytest.raises(InvalidInputError, match="items"):
        cv.observe(np.array([1]), np.array([-1]), np.array([0.0]), np.ones(1, np.float32))
    with pytest.raises(InvalidInputError, match="ts"):
        cv.observe(np.array([1]), np.array([2]), np.array([np.nan]), np.ones(1, np.float32))
    with pytest.raises(InvalidInputError, match="max_neighbours"):
        _native.CoVisitation(0)
    with pytest.raises(CorruptDataError):
        _native.CoVisitation.from_state(cv.state()[:-3])
    back = _native.CoVisitation.from_state(cv.state())
    assert back.neighbours(1, 5)[0].tolist() == [0] and back.pairs == cv.pairs == 1


def test_ivf_index_finds_the_nearest_items() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, 16)).astype(np.float32)
    x = centres[rng.integers(50, size=5000)] + 0.3 * rng.standard_normal((5000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = IVFIndex(x, lists=40)
    assert index.offsets[-1] == len(x) and sorted(index.order.tolist()) == list(range(len(x)))
    recall = []
    for q in x[:20]:
        exact = set(np.argsort(-(x @ q))[:10].tolist())
        got, sims = index.search(q, 10, probe=8)
        assert np.all(np.diff(sims) <= 0)
        recall.append(len(exact & set(got.tolist())) / 10)
    assert np.mean(recall) >= 0.9
    skip = np.zeros(len(x), bool)
    skip[index.search(x[0], 10, probe=8)[0]] = True
    assert not skip[index.search(x[0], 10, probe=8, skip=skip)[0]].any()


def test_content_retrieval_through_the_index_on_a_large_catalog() -> None:
    big = make_learner(ann_above=10)  # every catalog counts as large here
    assert big.retrieval._ann is not None
    big.learn(events([(500 + k, "fan", f"horror-{k}", "click") for k in range(4)], start_seq=10_000))
    fan = big.featurizer.users.get("fan")
    c = big.retrieval.retrieve(fan, float(T0 + 600), pipeline.exclusions(big, fan, point_in_time=True))
    content = names(big, c.lists["content"])
    assert "horror-new" in content and all(i.startswith("horror") for i in content[:5])


def test_the_trending_lists_are_rebuilt_by_the_learner_not_by_the_next_read(learner: OnlineLearner) -> None:
    """Each learn chunk ends with the lists rebuilt, so a recommend after it finds them current."""
    r = learner.retrieval
    before = r.version
    learner.learn(events([(500, "u1", f"{CATS[1]}-0", "click"), (501, "u2", f"{CATS[1]}-1", "click")], start_seq=999))
    assert r.version > before
    top = r._top  # the cache itself is what this test is about
    assert top is not None and top[0] == (r.version, len(learner.featurizer.items))


def test_a_rating_of_any_value_feeds_the_sources_and_a_showing_does_not() -> None:
    """A one-star rating says the user watched the film: it pairs items as a five-star one does.
    An impression that expires unclicked and a dismissal pair nothing. Taking the user back
    (a bot's verdict, a forget) subtracts exactly what went in, the low rating included."""
    from rtrec.learn.probation import take_back

    cfg = load_config(overrides={"retrieve": {"per_source": 10, "fresh": 4}})
    learner = OnlineLearner(cfg)
    learner.set_catalog(catalog())
    t = events(
        [
            (0, "a", "horror-0", "rating"),
            (1, "a", "horror-1", "rating"),
            (2, "a", "horror-2", "impression"),
            (3, "a", "horror-3", "dismiss"),
            (4, "a", "horror-4", "rating"),
            (5, "c", "horror-1", "rating"),
            (7200, "b", "comedy-0", "click"),  # moves the watermark past the impression's window
        ]
    )
    t = t.set_column(t.schema.get_field_index("value"), "value", pa.array([5.0, 1.0, None, None, 4.5, 5.0, None]))
    learner.learn(t)
    idx = learner.featurizer.items.get
    pairs = dict(zip(*learner.retrieval.covisit.neighbours(idx("horror-0"), 10), strict=True))
    assert idx("horror-1") in pairs and idx("horror-4") in pairs  # the 1-star rating pairs as the others do
    assert idx("horror-2") not in pairs and idx("horror-3") not in pairs
    assert learner.retrieval.count[idx("horror-1")] == 2 and learner.retrieval.count[idx("horror-2")] == 0
    counts = learner.featurizer.item_counts
    rows = [idx("horror-0"), idx("horror-1")]
    assert counts.n[rows].tolist() == [1, 2] and counts.npos[rows].tolist() == [1, 1]
    assert take_back(learner, np.array([learner.featurizer.users.get("a")])) == 3
    assert len(learner.retrieval.covisit.neighbours(idx("horror-0"), 10)[0]) == 0
    assert learner.retrieval.count[idx("horror-1")] == 1  # user c's rating stays
    assert counts.n[rows].tolist() == [0, 1] and counts.npos[rows].tolist() == [0, 1]
