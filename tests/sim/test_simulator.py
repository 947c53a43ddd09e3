"""Tests for rtrec.sim: determinism, schema, ground truth and preference shifts."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rtrec.cli import app
from rtrec.errors import InvalidInputError
from rtrec.events import EventLog
from rtrec.sim import SimConfig, Simulator
from tests.labels.helpers import Reader

SMALL = SimConfig(n_users=50, n_items=60, n_topics=4, n_events=5_000, seed=3)
DIRTY = dataclasses.replace(SMALL, bot_share=0.2, noise_share=0.1)


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


def _contexts(events: pa.Table) -> list[dict[str, Any]]:
    return [json.loads(c) for c in events.column("context").to_pylist()]


@pytest.fixture(scope="module")
def dirty() -> tuple[Simulator, pa.Table, list[dict[str, Any]]]:
    sim = Simulator(DIRTY)
    events = sim.generate()
    return sim, events, _contexts(events)


def test_bots_and_noise_come_on_top_of_an_untouched_real_stream(dirty: Any) -> None:
    sim, events, ctx = dirty
    clean = Simulator(SMALL).generate()
    truth = np.array([c.get("truth") for c in ctx], dtype=object)
    counts = sim.event_counts()
    assert (counts.real, counts.total) == (clean.num_rows, events.num_rows)
    assert ((truth == "bot").sum(), (truth == "noise").sum()) == (counts.bot, counts.noise)
    assert counts.bot / counts.total == pytest.approx(DIRTY.bot_share, abs=0.01)
    assert counts.noise / counts.real == pytest.approx(DIRTY.noise_share, abs=0.01)
    # Dropping what the truth marks gives the world without bots, row for row and in the same order.
    assert events.filter(pa.array(truth == None)).equals(clean)  # noqa: E711
    assert np.all(np.diff(events.column("ts").cast("int64").to_numpy()) >= 0)
    assert len(set(events.column("event_id").to_pylist())) == events.num_rows
    # Bots look like users: ids in the same style, after the real ones, none of them a real user.
    bots = {r["user_id"] for r, c in zip(events.to_pylist(), ctx, strict=True) if c.get("truth") == "bot"}
    assert all(re.fullmatch(r"u\d+", u) and int(u[1:]) >= DIRTY.n_users for u in bots)
    assert 5 <= len(bots) <= DIRTY.n_users
    kinds = Counter(c.get("bot_kind") or c.get("noise_kind") for c in ctx if "truth" in c)
    assert kinds["promoter"] == pytest.approx(counts.bot / 2, abs=1)
    assert kinds["click_spammer"] == pytest.approx(counts.bot / 2, abs=1)
    assert kinds["outlier"] == pytest.approx(0.2 * counts.noise, abs=1)
    # Bots are active over the whole timeline.
    ts = events.column("ts").cast("int64").to_numpy()
    quarter = np.minimum(((ts - ts[0]) * 4) // (ts[-1] - ts[0] + 1), 3)
    assert set(quarter[truth == "bot"].tolist()) == {0, 1, 2, 3}
    with pytest.raises(InvalidInputError, match="bot_share"):
        SimConfig(bot_share=1.0)
    with pytest.raises(InvalidInputError, match="noise_share"):
        SimConfig(noise_share=-0.1)


def test_promoters_push_weak_items_they_were_never_shown(dirty: Any) -> None:
    sim, events, ctx = dirty
    rows = events.to_pylist()
    promoted = set(sim.promoted_items)
    weak = set(np.array(sim.item_ids)[sim.quality <= np.median(sim.quality)].tolist())
    assert promoted <= weak
    prom = [r for r, c in zip(rows, ctx, strict=True) if c.get("bot_kind") == "promoter"]
    bandwagon = set(sim.bandwagon_items)
    assert not bandwagon & promoted
    assert {r["item_id"] for r in prom if r["event_type"] != "impression"} <= promoted | bandwagon
    assert {r["item_id"] for r in prom if r["event_type"] in ("add_to_cart", "purchase")} <= promoted
    assert {r["item_id"] for r in prom if r["event_type"] == "click"} & bandwagon  # the bandwagon attack
    assert {"click", "add_to_cart", "purchase"} <= {r["event_type"] for r in prom}
    # Many events per target, far above the feedback that real users give an item.
    feedback_types = ("click", "add_to_cart", "purchase")
    real_feedback = Counter(
        r["item_id"] for r, c in zip(rows, ctx, strict=True) if "truth" not in c and r["event_type"] in feedback_types
    )
    pushed = Counter(r["item_id"] for r in prom if r["event_type"] in feedback_types and r["item_id"] in promoted)
    assert sum(pushed.values()) / len(promoted) > 2 * np.mean(list(real_feedback.values()))
    # Most of their feedback answers no impression; some promoters do take slates and click targets there.
    feedback = [r for r in prom if r["event_type"] != "impression"]
    assert sum(r["request_id"] is None for r in feedback) > 0.8 * len(feedback)
    shown = {(r["request_id"], r["item_id"]) for r in prom if r["event_type"] == "impression"}
    assert any((r["request_id"], r["item_id"]) in shown for r in feedback if r["event_type"] == "click")
    # In bursts: several events a minute.
    gaps = [
        np.diff(sorted(r["ts"].timestamp() for r in prom if r["user_id"] == u)) for u in {r["user_id"] for r in prom}
    ]
    assert np.median(np.concatenate(gaps)) < 10.0


def test_a_pure_push_attack_spends_nothing_on_popular_items() -> None:
    sim = Simulator(dataclasses.replace(DIRTY, bot_bandwagon=0.0))
    events = sim.generate()
    prom = [r for r, c in zip(events.to_pylist(), _contexts(events), strict=True) if c.get("bot_kind") == "promoter"]
    feedback = {r["item_id"] for r in prom if r["event_type"] != "impression"}
    assert feedback and feedback <= set(sim.promoted_items)
    with pytest.raises(InvalidInputError, match="bot_bandwagon"):
        SimConfig(bot_bandwagon=1.5)


def test_click_spammers_click_nearly_everything_they_are_shown(dirty: Any) -> None:
    _, events, ctx = dirty
    spam = [r for r, c in zip(events.to_pylist(), ctx, strict=True) if c.get("bot_kind") == "click_spammer"]
    shown = {(r["request_id"], r["item_id"]): r for r in spam if r["event_type"] == "impression"}
    clicks = [r for r in spam if r["event_type"] == "click"]
    assert {r["event_type"] for r in spam} == {"impression", "click"}
    assert all(0 < r["propensity"] <= 1 and r["request_id"] for r in shown.values())
    for user in {r["user_id"] for r in spam}:
        n_shown = sum(r["user_id"] == user for r in shown.values())
        assert sum(r["user_id"] == user for r in clicks) > 0.8 * n_shown
    delays = [(c["ts"] - shown[c["request_id"], c["item_id"]]["ts"]).total_seconds() for c in clicks]
    assert min(delays) > 0 and np.median(delays) < 5.0


def test_crawlers_walk_the_catalog_in_order_clicking_what_they_were_never_shown() -> None:
    cfg = dataclasses.replace(DIRTY, bot_crawlers=0.5)
    sim = Simulator(cfg)
    events = sim.generate()
    ctx = _contexts(events)
    rows = events.to_pylist()
    counts = sim.event_counts()
    kinds = Counter(c.get("bot_kind") for c in ctx if c.get("truth") == "bot")
    assert kinds["crawler"] == round(0.5 * counts.bot)
    assert kinds["promoter"] + kinds["click_spammer"] == counts.bot - kinds["crawler"]
    # The real stream is untouched, and crawlers have user ids of their own.
    truth = np.array([c.get("truth", "") for c in ctx])
    assert events.filter(pa.array(truth == "")).equals(Simulator(SMALL).generate())
    crawl = [r for r, c in zip(rows, ctx, strict=True) if c.get("bot_kind") == "crawler"]
    others = {r["user_id"] for r, c in zip(rows, ctx, strict=True) if c.get("truth") == "bot"} - {
        r["user_id"] for r in crawl
    }
    assert {r["user_id"] for r in crawl}.isdisjoint(others)
    order = {item: k for k, item in enumerate(sim.catalog().column("item_id").to_pylist())}
    for user in {r["user_id"] for r in crawl}:
        mine = sorted((r for r in crawl if r["user_id"] == user), key=lambda r: r["ts"])
        assert {r["event_type"] for r in mine} == {"click"} and all(r["request_id"] is None for r in mine)
        steps = np.diff([order[r["item_id"]] for r in mine]) % cfg.n_items
        assert (steps == 1).all()  # the next page of the listing, every time
        gaps = np.diff([r["ts"].timestamp() for r in mine])
        assert (gaps >= 0.5 - 1e-6).all() and (gaps <= 2.5 + 1e-6).all()
    # No crawlers by default: the mix of earlier versions, event for event.
    assert Simulator(DIRTY).generate().equals(Simulator(dataclasses.replace(DIRTY, bot_crawlers=0.0)).generate())
    with pytest.raises(InvalidInputError, match="bot_crawlers"):
        SimConfig(bot_crawlers=1.5)


def test_noise_repeats_and_outliers_copy_real_events(dirty: Any) -> None:
    _, events, ctx = dirty
    rows = events.to_pylist()
    real: dict[tuple[Any, ...], list[Any]] = {}
    for r, c in zip(rows, ctx, strict=True):
        if "truth" not in c:
            real.setdefault((r["user_id"], r["item_id"], r["event_type"], r["request_id"]), []).append(r)
    noise = [(r, c) for r, c in zip(rows, ctx, strict=True) if c.get("truth") == "noise"]
    for r, c in noise:
        originals = real[r["user_id"], r["item_id"], r["event_type"], r["request_id"]]
        gap = min((r["ts"] - o["ts"]).total_seconds() for o in originals if o["ts"] <= r["ts"])
        if c["noise_kind"] == "repeat":
            assert r["event_type"] in ("impression", "click", "add_to_cart")
            assert 0.1 <= gap <= 2.0
        else:
            assert r["event_type"] == "purchase"
            assert r["value"] >= 1000 * min(o["value"] for o in originals)


def test_simulate_cli_bots_and_noise(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["simulate", "--out", str(tmp_path), "--events", "2000", "--users", "20", "--items", "30"]
    r = runner.invoke(app, [*args, "--bots", "0.1", "--noise", "0.05", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    events = pq.read_table(summary["events"])
    truth = Counter(c.get("truth") for c in _contexts(events))
    assert (summary["event_count"], summary["bot_events"], summary["noise_events"]) == (
        events.num_rows,
        truth["bot"],
        truth["noise"],
    )
    assert truth[None] == 2000 and truth["noise"] == 100 and truth["bot"] > 0
    with EventLog.open(tmp_path / "db.duckdb") as log:  # the rest of rtrec takes the stream as it is
        assert log.ingest_file(summary["events"]).accepted == events.num_rows
    r = runner.invoke(app, [*args, "--bots", "1"])
    assert r.exit_code != 0 and "--bots" in r.output
    # Longer-lived bots: as many bot events, from fewer users.
    bot_users = {}
    for per in (10, 100):
        r = runner.invoke(app, [*args, "--bots", "0.1", "--events-per-bot", str(per), "--json"])
        assert r.exit_code == 0, r.output
        ev = pq.read_table(json.loads(r.output)["events"])
        bots = [
            u for u, c in zip(ev.column("user_id").to_pylist(), _contexts(ev), strict=True) if c.get("truth") == "bot"
        ]
        bot_users[per] = len(set(bots))
    assert bot_users[100] < bot_users[10]
    r = runner.invoke(app, [*args, "--bots", "0.1", "--crawlers", "1", "--json"])
    assert r.exit_code == 0, r.output
    ev = pq.read_table(json.loads(r.output)["events"])
    assert {c.get("bot_kind") for c in _contexts(ev) if c.get("truth") == "bot"} == {"crawler"}
