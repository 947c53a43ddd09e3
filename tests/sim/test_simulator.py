"""Tests for rtrec.sim: determinism, schema, ground truth and preference shifts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rtrec.errors import InvalidInputError
from rtrec.events import EventLog
from rtrec.sim import SimConfig, Simulator
from tests.labels.helpers import Reader

SMALL = SimConfig(n_users=50, n_items=60, n_topics=4, n_events=5_000, seed=3)


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b = Simulator(SMALL).generate(), Simulator(SMALL).generate()
    assert a.equals(b)
    assert Simulator(SMALL).catalog().equals(Simulator(SMALL).catalog())
    c = Simulator(SimConfig(n_users=50, n_items=60, n_topics=4, n_events=5_000, seed=4)).generate()
    assert not a.equals(c)


def test_events_shape_and_contents() -> None:
    sim = Simulator(SMALL)
    ev = sim.generate()
    assert ev.num_rows == SMALL.n_events
    kinds = Counter(ev.column("event_type").to_pylist())
    assert {"impression", "click", "add_to_cart", "purchase", "dismiss"} <= set(kinds)
    ts = ev.column("ts").cast("int64").to_numpy()
    assert np.all(np.diff(ts) >= 0)
    imp = ev.filter(ev.column("event_type").to_numpy(zero_copy_only=False) == "impression")
    props = np.asarray(imp.column("propensity").to_pylist(), dtype=float)
    assert np.all((props > 0) & (props <= 1))
    assert imp.column("request_id").null_count == 0
    assert len(set(ev.column("event_id").to_pylist())) == ev.num_rows


def test_catalog_text_comes_from_topic_vocabularies() -> None:
    sim = Simulator(SMALL)
    cat = sim.catalog()
    assert cat.num_rows == SMALL.n_items
    from rtrec.sim.vocab import topic_vocab

    vocab = dict(topic_vocab(SMALL.n_topics))
    for row in cat.to_pylist()[:20]:
        words = set(vocab[row["category"]])
        assert row["category"] == sim.topic_of(row["item_id"])
        assert set(row["tags"]) <= words
        assert sum(w.lower().strip(".") in words for w in row["description"].split()) >= 5


def test_clicks_follow_the_known_model() -> None:
    sim = Simulator(SimConfig(n_users=30, n_items=40, n_topics=3, n_events=40_000, seed=1, shift_at=(0.9,)))
    ev = sim.generate().to_pylist()
    clicked = {(e["request_id"], e["item_id"]) for e in ev if e["event_type"] == "click"}
    expected, observed = 0.0, 0
    for e in ev:
        if e["event_type"] == "impression":
            expected += sim.click_prob(e["user_id"], e["item_id"], e["ts"])
            observed += (e["request_id"], e["item_id"]) in clicked
    assert abs(observed - expected) < 4 * np.sqrt(expected)  # binomial noise


def test_shift_changes_ground_truth() -> None:
    sim = Simulator(SimConfig(n_users=40, n_items=60, n_topics=4, seed=2, switch_fraction=1.0))
    (shift,) = sim.shift_times
    before, after = shift.timestamp() - 60, shift.timestamp() + 60
    changed = [u for u in sim.user_ids if sim.favourite_topic(u, before) != sim.favourite_topic(u, after)]
    assert len(changed) >= 30
    faded = sim.topics[int(sim.faded[0][0])]
    item = next(i for i in sim.item_ids if sim.topic_of(i) == faded)
    user = sim.user_ids[0]
    assert sim.click_prob(user, item, after) <= sim.click_prob(user, item, before) + 1e-12


def test_respond_and_unknown_ids() -> None:
    sim = Simulator(SMALL)
    events = sim.respond("u1", ["i1", "i2"], 1_704_067_200, request_id="r")
    assert [e["event_type"] for e in events[:2]] == ["impression", "impression"]
    assert all(e["request_id"] == "r" for e in events)
    assert sim.respond("u1", ["i1"], 1_704_067_200)[0]["event_id"] != events[0]["event_id"]
    with pytest.raises(InvalidInputError, match="user_id"):
        sim.click_prob("nobody", "i1", 0)
    with pytest.raises(InvalidInputError, match="n_items"):
        SimConfig(n_items=2, n_topics=3)


def test_write_ingest_and_label(tmp_path: Path) -> None:
    events_path, items_path = Simulator(SMALL).write(tmp_path / "sim")
    with EventLog.open(tmp_path / "db.duckdb") as log:
        s = log.ingest_file(events_path)
        assert (s.accepted, len(s.rejected)) == (SMALL.n_events, 0)
        assert log.ingest_file(items_path, items=True).accepted == SMALL.n_items
        r = Reader()
        out = [row for b in log.tail(0, batch_size=1000) for row in r.process(b)] + r.drain()
    origins = Counter(o for *_, o in out)
    assert origins["impression"] > 0 and origins["late"] > 0


def test_styles_show_only_in_the_text_and_move_the_click_probability() -> None:
    from rtrec.sim.vocab import ADJECTIVES, FILLER, STYLES, TOPICS

    every_style_word = {w for words in STYLES.values() for w in words}
    assert not every_style_word & ({w for words in TOPICS.values() for w in words} | set(ADJECTIVES) | set(FILLER))
    plain = Simulator(SMALL)
    styled = Simulator(SimConfig(n_users=50, n_items=60, n_topics=4, n_events=5_000, seed=3, n_styles=4))
    # Styles draw from their own random stream: the rest of the world is unchanged.
    assert np.array_equal(plain.item_topic, styled.item_topic)
    assert np.array_equal(plain.quality, styled.quality)
    style_words = [set(words) for words in STYLES.values()]
    for k, row in enumerate(styled.catalog().to_pylist()):
        own = style_words[int(styled.item_style[k])]
        text = {w.lower().strip(".") for w in f"{row['title']} {row['description']}".split()}
        assert len(text & own) >= 2  # the title's adjective and two description words
        assert not own & ({row["category"]} | set(row["tags"]))
    assert set(styled.item_style.tolist()) == {0, 1, 2, 3}
    # One user, two items of one topic: the logit differs by the style term plus the qualities.
    from datetime import UTC, datetime

    ts = datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC)
    prefs = styled._style_prefs[0][0]
    pairs = [
        (i, j)
        for i in range(60)
        for j in range(60)
        if styled.item_topic[i] == styled.item_topic[j] and styled.item_style[i] != styled.item_style[j]
    ]
    assert pairs
    for i, j in pairs[:10]:
        pi, pj = styled.click_prob("u0", f"i{i}", ts), styled.click_prob("u0", f"i{j}", ts)
        lift = styled.cfg.style_scale * (prefs[styled.item_style[i]] - prefs[styled.item_style[j]])
        got = np.log(pi / (1 - pi)) - np.log(pj / (1 - pj))
        assert got == pytest.approx(lift + styled.quality[i] - styled.quality[j], abs=1e-9)
    with pytest.raises(InvalidInputError, match="n_styles"):
        SimConfig(n_styles=99)
