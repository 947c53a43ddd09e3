"""The cleaner: each rule on small hand-made streams, point-in-time verdicts, state, forgetting."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from rtrec.clean import Cleaned, Cleaner
from rtrec.config import CleanConfig, load_config
from rtrec.labels import conform
from rtrec.sim import SimConfig, Simulator
from tests.clean.reference import Reference, stream

# Every rule off; each test turns on the one it checks.
OFF = CleanConfig(
    user_max_per_min=0,
    item_max_per_min=0,
    repeat_window_s=0.0,
    bot_min_impressions=0,
    bot_min_clicks=0,
    value_min_count=0,
)


def only(**on: Any) -> CleanConfig:
    return dataclasses.replace(OFF, **on)


def run(cfg: CleanConfig, rows: list[tuple[Any, ...]]) -> Cleaned:
    return Cleaner(cfg).clean(stream(rows))


def test_config_section_defaults() -> None:
    cfg = load_config().clean
    assert cfg == CleanConfig()
    assert (cfg.enabled, cfg.user_max_per_min, cfg.item_max_per_min, cfg.repeat_window_s) == (True, 600, 0, 2.0)


def test_a_copy_within_the_window_is_set_aside_and_a_burst_of_copies_is_learned_once() -> None:
    out = run(
        only(repeat_window_s=2.0),
        [
            (0.0, "u", "a", "click"),
            (1.0, "u", "a", "click"),  # copy
            (2.5, "u", "a", "click"),  # 1.5 s after the last copy: a copy too
            (10.0, "u", "a", "click"),  # a new click
            (10.5, "u", "b", "click"),  # another item
            (10.6, "v", "a", "click"),  # another user
            (11.0, "u", "a", "rating", 3.0),
            (11.5, "u", "a", "rating", 4.0),  # a correction, not a copy
            (12.0, "u", "c", "impression", None, "r1"),
            (12.0, "u", "c", "impression", None, "r2"),  # another slate: shown again
            (12.1, "u", "c", "impression", None, "r2"),  # the same slate twice
        ],
    )
    assert out.quarantined == [
        (2, "repeat: same user, item and click within 2 s"),
        (3, "repeat: same user, item and click within 2 s"),
        (11, "repeat: same user, item and impression within 2 s"),
    ]
    assert out.table.column("seq").to_pylist() == [1, 4, 5, 6, 7, 8, 9, 10]
    assert out.table.schema == stream([]).schema


def test_user_rate_limit_counts_every_event_sent_but_not_impressions() -> None:
    cleaner = Cleaner(only(user_max_per_min=3))
    rows = [(float(s), "u", f"i{s}", "click") for s in range(4)]
    rows += [(3.5, "u", f"x{k}", "impression") for k in range(20)]
    rows += [(4.0, "u", "i9", "click"), (4.0, "v", "i9", "click"), (70.0, "u", "i10", "click")]
    out = cleaner.clean(stream(rows))
    assert out.quarantined == [
        (4, "rate_user: 4 events in 60 s by this user (limit 3)"),
        (25, "rate_user: 5 events in 60 s by this user (limit 3)"),  # the one set aside still counted
    ]
    assert cleaner.counts()["rate_user"] == 2


def test_the_rate_window_is_six_ten_second_steps_of_the_users_own_clock() -> None:
    cfg = only(user_max_per_min=2)
    # 0, 1 and 55 s fall into steps 0, 0 and 5: one window. 61 s is step 6, without step 0.
    rows = [(0.0, "u", "a", "click"), (1.0, "u", "b", "click"), (55.0, "u", "c", "click"), (61.0, "u", "d", "click")]
    assert run(cfg, rows).quarantined == [(3, "rate_user: 3 events in 60 s by this user (limit 2)")]
    # A late event counts at the user's clock (61 s), not at its own time.
    late = [*rows, (1.5, "u", "e", "click")]
    assert run(cfg, late).quarantined[-1] == (5, "rate_user: 3 events in 60 s by this user (limit 2)")


def test_item_rate_limit() -> None:
    rows = [(float(k), f"u{k}", "hot", "click") for k in range(3)] + [(3.0, "u9", "cold", "click")]
    out = run(only(item_max_per_min=2), rows)
    assert out.quarantined == [(3, "rate_item: 3 events in 60 s on this item (limit 2)")]


def test_a_user_clicking_nearly_everything_shown_is_a_bot_from_then_on() -> None:
    rows: list[tuple[Any, ...]] = []
    for k in range(4):
        rows += [(10.0 * k, "b", f"i{k}", "impression"), (10.0 * k + 3, "b", f"i{k}", "click")]
        rows += [(10.0 * k, "h", f"i{k}", "impression")]
    rows += [(50.0, "b", "i9", "add_to_cart"), (50.0, "h", "i0", "click")]
    cleaner = Cleaner(only(bot_min_impressions=4, bot_click_rate=0.9))
    out = cleaner.clean(stream(rows))
    # b: 3 clicks of 4 impressions (0.75) at seq 10, then 4 of 4 at seq 11.
    assert out.quarantined == [
        (11, "bot: click rate 1.00 over 4 impressions"),
        (13, "bot: click rate 1.00 over 4 impressions"),
    ]
    assert cleaner.counts()["bot_users"] == 1 and cleaner.counts()["bot"] == 2
    later = cleaner.clean(stream([(60.0, "b", "i1", "rating", 5.0)], start_seq=15))
    assert later.quarantined == [(15, "bot: click rate 1.00 over 4 impressions")]


def test_a_user_clicking_mostly_items_never_shown_is_a_bot_once_the_stream_logs_impressions() -> None:
    cfg = only(bot_min_clicks=3, bot_unshown_share=0.8, bot_shown_window_s=3600.0)
    rows = [(float(k), "early", f"i{k}", "click") for k in range(5)]  # before any impression: not judged
    rows += [(10.0, "h", "a", "impression"), (10.0, "h", "b", "impression"), (10.0, "h", "c", "impression")]
    rows += [(12.0, "h", "a", "click"), (13.0, "h", "b", "click"), (14.0, "h", "c", "click")]
    rows += [(20.0, "b", "x", "click"), (21.0, "b", "y", "click"), (22.0, "b", "z", "click")]
    rows += [(23.0, "b", "a", "purchase")]
    rows += [(30.0, "late", "a", "impression"), (3700.0, "late", "a", "click")]  # shown too long ago
    rows += [(3701.0, "late", "q", "click"), (3702.0, "late", "r", "click")]
    out = run(cfg, rows)
    assert out.quarantined == [
        (14, "bot: 100% of 3 clicks on items not shown to this user"),
        (15, "bot: 100% of 3 clicks on items not shown to this user"),
        (19, "bot: 100% of 3 clicks on items not shown to this user"),
    ]


def test_shown_items_are_remembered_per_user_up_to_a_bound() -> None:
    from rtrec.clean.bots import SHOWN_ITEMS

    cfg = only(bot_min_clicks=2, bot_unshown_share=0.5)
    rows = [(0.0, "u", f"i{k}", "impression") for k in range(SHOWN_ITEMS + 1)]
    rows += [(5.0, "u", "i1", "click"), (6.0, "u", "i0", "click")]  # i0 fell out of the last SHOWN_ITEMS
    n = len(rows)
    assert run(cfg, rows).quarantined == [(n, "bot: 50% of 2 clicks on items not shown to this user")]
    # Split anywhere, the verdict is the same.
    cleaner = Cleaner(cfg)
    got = cleaner.clean(stream(rows[:10])).quarantined + cleaner.clean(stream(rows[10:], start_seq=11)).quarantined
    assert got == [(n, "bot: 50% of 2 clicks on items not shown to this user")]


def _purchases(values: list[float], start: float = 0.0) -> list[tuple[Any, ...]]:
    return [(start + k, f"u{k % 7}", f"i{k}", "purchase", v) for k, v in enumerate(values)]


def test_value_outliers_are_judged_against_the_median_and_mad_of_earlier_values() -> None:
    values = [10.0 + k % 21 for k in range(64)]
    values[5] = 1e6  # too early to judge (no reference yet); the median shrugs it off
    rows = _purchases([*values, 150_000.0, 130.0, 131.0, float("nan"), 25.0])
    cleaner = Cleaner(only(value_min_count=50, value_mad_k=20.0))
    out = cleaner.clean(stream(rows))
    assert out.quarantined == [
        (65, "value: 150000 is an outlier for purchase (median 20, MAD 5.5)"),
        (67, "value: 131 is an outlier for purchase (median 20, MAD 5.5)"),
        (68, "value: nan is not a finite number"),
    ]
    assert out.flagged == []  # a purchases-only log: no engagement, no sequence flags
    assert cleaner.counts()["value"] == 3


def test_the_mad_has_a_floor_so_constant_values_do_not_make_everything_an_outlier() -> None:
    rows = _purchases([9.99] * 64 + [25.0, 40.0])
    out = run(only(value_min_count=50, value_mad_k=20.0, value_mad_floor=0.1), rows)
    assert out.quarantined == [(66, "value: 40 is an outlier for purchase (median 9.99, MAD 0.999)")]
    # All zeros give no scale to judge by: nothing is set aside.
    assert run(only(value_min_count=50), _purchases([0.0] * 64 + [5.0])).quarantined == []


def test_a_purchase_without_earlier_engagement_is_learned_but_flagged() -> None:
    out = run(
        OFF,
        [
            (0.0, "w", "z", "purchase", 5.0),  # the stream logs no engagement yet
            (1.0, "u", "a", "click"),
            (2.0, "u", "a", "purchase", 5.0),
            (3.0, "u", "b", "purchase", 5.0),
            (4.0, "v", "a", "purchase", 5.0),
            (5.0, "v", "c", "rating", 4.0),
            (6.0, "v", "c", "purchase", 5.0),
        ],
    )
    assert out.quarantined == []
    assert out.flagged == [
        (4, "sequence: purchase without earlier engagement"),
        (5, "sequence: purchase without earlier engagement"),
    ]
    assert out.table.num_rows == 7


def test_disabled_passes_the_table_through() -> None:
    t = stream([(0.0, "u", "a", "click"), (0.5, "u", "a", "click")])
    cleaner = Cleaner(CleanConfig(enabled=False))
    out = cleaner.clean(t)
    assert out.table is t and out.quarantined == [] and out.flagged == []
    counts = cleaner.counts()
    assert set(counts) == {"events", "bot_users", "bot", "repeat", "rate_user", "rate_item", "value", "sequence"}
    assert set(counts.values()) == {0}


def random_stream(seed: int, n: int = 3000) -> pa.Table:
    """Six users: u0 clicks nearly everything it is shown, u1 clicks items it was never shown, the
    others mostly click what they were shown. Copies, out-of-order times, bursts by a user and on
    an item, absurd values."""
    rng = np.random.default_rng(seed)
    kinds = ["impression", "click", "add_to_cart", "purchase", "rating", "favorite", "dismiss"]
    p = [0.5, 0.2, 0.06, 0.08, 0.1, 0.03, 0.03]
    shown: dict[str, list[str]] = {}
    rows: list[tuple[Any, ...]] = []
    t = 0.0
    while len(rows) < n:
        t += float(rng.exponential(0.4))
        user = f"u{rng.integers(6)}"
        if rng.random() < 0.005:  # a burst of ratings by one user
            rows += [(t + k / 6, user, f"i{rng.integers(60)}", "rating", 3.0) for k in range(30)]
            continue
        if rng.random() < 0.005:  # a burst on one item
            rows += [(t + k * 0.7, f"u{rng.integers(2, 6)}", "hot", "add_to_cart") for k in range(16)]
            continue
        kind = kinds[rng.choice(len(kinds), p=p)]
        item = f"i{rng.integers(60)}"
        if kind == "impression":
            shown.setdefault(user, []).append(item)
            if user == "u0":
                rows.append((t, user, item, kind, None, "r0"))
                kind = "click"
        elif kind == "click" and user == "u1":
            item = f"z{rng.integers(1000)}"
        elif kind == "click" and shown.get(user) and rng.random() < 0.9:
            item = shown[user][-int(rng.integers(1, min(len(shown[user]), 10) + 1))]
        value = None
        if kind == "purchase":
            value = float(np.round(rng.lognormal(3, 0.5), 2)) if rng.random() > 0.05 else 1e5
        elif kind == "rating":
            value = float(rng.integers(1, 6))
        ts = t - float(rng.exponential(20)) if rng.random() < 0.05 else t
        row = (ts, user, item, kind, value, f"r{rng.integers(3)}")
        rows.append(row)
        if rng.random() < 0.05:
            rows.append((ts + float(rng.uniform(0, 3)), *row[1:]))
    return stream(rows[:n])


RANDOM_CFG = CleanConfig(
    user_max_per_min=25,
    item_max_per_min=12,
    repeat_window_s=2.0,
    bot_click_rate=0.9,
    bot_min_impressions=30,
    bot_unshown_share=0.7,
    bot_min_clicks=15,
    bot_shown_window_s=120.0,
    value_min_count=20,
    value_mad_k=4.0,
)


def clean_in_chunks(cleaner: Cleaner, t: pa.Table, cuts: list[int]) -> tuple[list[Any], list[Any], list[int]]:
    quarantined, flagged, kept = [], [], []
    for lo, hi in zip([0, *cuts], [*cuts, t.num_rows], strict=True):
        out = cleaner.clean(t.slice(lo, hi - lo))
        quarantined += out.quarantined
        flagged += out.flagged
        kept += out.table.column("seq").to_pylist()
    return quarantined, flagged, kept


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_verdicts_match_the_one_row_at_a_time_reference_however_the_stream_is_chunked(seed: int) -> None:
    t = random_stream(seed)
    expected = Reference(RANDOM_CFG).clean(t)
    rng = np.random.default_rng(seed)
    whole = clean_in_chunks(Cleaner(RANDOM_CFG), t, [])
    assert (whole[0], whole[1]) == expected
    assert {"bot", "repeat", "rate_user", "rate_item", "value"} <= {why.split(":")[0] for _, why in whole[0]}
    assert whole[1]  # some sequence flags
    for sizes in ([1] * 40 + [7] * 30, list(rng.integers(1, 400, 30))):
        cuts = [c for c in np.cumsum(sizes).tolist() if c < t.num_rows]
        assert clean_in_chunks(Cleaner(RANDOM_CFG), t, cuts) == whole


def test_a_verdict_does_not_change_when_later_rows_arrive() -> None:
    t = random_stream(3, 1500)
    full = clean_in_chunks(Cleaner(RANDOM_CFG), t, [])
    for k in (200, 900):
        part = clean_in_chunks(Cleaner(RANDOM_CFG), t.slice(0, k), [])
        seqs = set(t.column("seq").to_pylist()[:k])
        assert part[0] == [q for q in full[0] if q[0] in seqs]
        assert part[1] == [f for f in full[1] if f[0] in seqs]


def test_state_dict_round_trip_continues_identically() -> None:
    t = random_stream(4, 2000)
    whole = clean_in_chunks(Cleaner(RANDOM_CFG), t, [700, 1300])
    first = Cleaner(RANDOM_CFG)
    head = clean_in_chunks(first, t.slice(0, 1000), [700])
    restored = Cleaner(RANDOM_CFG)
    restored.load_state_dict(pickle.loads(pickle.dumps(first.state_dict())))
    tail = clean_in_chunks(restored, t.slice(1000), [300])
    assert (head[0] + tail[0], head[1] + tail[1], head[2] + tail[2]) == whole
    again = Cleaner(RANDOM_CFG)
    clean_in_chunks(again, t, [])
    assert restored.counts() == again.counts()


def test_forget_user_drops_what_the_cleaner_holds_about_them() -> None:
    cfg = dataclasses.replace(RANDOM_CFG, bot_min_impressions=2, bot_click_rate=0.9)
    cleaner = Cleaner(cfg)
    rows = [(0.0, "b", "a", "impression"), (1.0, "b", "a", "click"), (2.0, "b", "c", "impression")]
    rows += [(3.0, "b", "c", "click"), (4.0, "h", "a", "click"), (5.0, "h", "a", "rating", 4.0)]
    cleaner.clean(stream(rows))
    assert cleaner.counts()["bot_users"] == 1
    before = cleaner.state_dict()
    cleaner.forget_user("b")
    cleaner.forget_user("nobody")  # unknown: nothing to do
    s = cleaner.state_dict()
    assert "b" not in s["users"] and "b" in before["users"]
    k = before["users"].index("b")
    assert s["bots"]["reasons"] == {} and not s["bots"]["flagged"][k] and not s["bots"]["tally"][k].any()
    assert k not in s["repeats"]["users"].tolist() and k in before["repeats"]["users"].tolist()
    assert not s["rate_user"]["counts"][k].any() and not s["engaged"]["items"][k].any()
    # Back with the same id, the user starts afresh: not a bot, no copy of the click before.
    again = cleaner.clean(stream([(3.5, "b", "c", "click"), (3.6, "b", "a", "favorite")], start_seq=7))
    assert again.quarantined == []
    # The values of a forgotten user leave the samples.
    vc = Cleaner(only(value_min_count=1))
    vc.clean(stream([*_purchases([20.0] * 10), (20.0, "x", "q", "purchase", 30.0)]))
    vc.forget_user("x")
    assert 30.0 not in vc.state_dict()["values"]["purchase"]["values"].tolist()


def test_load_state_dict_refuses_a_foreign_state() -> None:
    from rtrec.errors import CorruptDataError

    with pytest.raises(CorruptDataError, match="cleaner state"):
        Cleaner(CleanConfig()).load_state_dict({"version": 99})


def simulated(n: int, **kw: Any) -> pa.Table:
    t = Simulator(SimConfig(n_events=n, **kw)).generate()
    return conform(t.add_column(0, "seq", pa.array(np.arange(1, t.num_rows + 1), pa.int64())))


def test_an_ordinary_simulated_stream_is_left_almost_untouched() -> None:
    t = simulated(20_000)
    cleaner = Cleaner(CleanConfig())
    _, _, kept = clean_in_chunks(cleaner, t, list(range(1024, t.num_rows, 1024)))
    counts = cleaner.counts()
    assert counts["events"] == t.num_rows
    assert len(kept) >= 0.999 * t.num_rows, counts
    assert counts["bot_users"] == 0 and counts["sequence"] <= 0.01 * t.num_rows
