"""Rich views of the daemon's stats (``rtrec inspect``); the only library code that imports rich.

Every view takes a ``StatsResponse`` (``GET /v1/stats``, or a stopped daemon's home read
offline); the parts a stopped daemon cannot know are absent and show as a dash.

>>> from rich.console import Console
>>> Console(width=100, file=__import__("io").StringIO()).print(render({"running": False}))
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from rtrec.clean import FLAGS, RULES
from rtrec.contracts import GcStats, LiveOpe, Percentiles, PrivacyStatus, StatsResponse

__all__ = ["live", "render", "sparkline"]

BARS = "▁▂▃▄▅▆▇█"
DASH = "–"


def sparkline(values: Sequence[float | None], width: int = 40) -> str:
    """Unicode bars scaled between the series' min and max; the newest ``width`` values."""
    vals = [v for v in values if v is not None and isinstance(v, int | float) and math.isfinite(v)][-width:]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12:
        return BARS[len(BARS) // 2] * len(vals)
    return "".join(BARS[min(len(BARS) - 1, int((v - lo) / (hi - lo) * len(BARS)))] for v in vals)


def _num(v: Any, fmt: str = "{:,.0f}") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return DASH
    try:
        return fmt.format(v)
    except (TypeError, ValueError):
        return str(v)


def _ms(v: Any) -> str:
    return DASH if v is None else f"{float(v) * 1000:,.1f} ms"


def _ago(ts: Any) -> str:
    if not ts:
        return DASH
    age = time.time() - float(ts)
    if age < 120:
        return f"{age:.0f} s ago"
    if age < 7200:
        return f"{age / 60:.0f} min ago"
    return f"{age / 3600:.1f} h ago"


def _pcts(p: Percentiles | None) -> str:
    if p is None or p["p50"] is None:
        return DASH
    return f"p50 {_ms(p['p50'])} · p90 {_ms(p['p90'])} · p99 {_ms(p['p99'])}  (n={p['count']:,})"


def _kv(title: str, rows: list[tuple[str, RenderableType | str]]) -> Panel:
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold cyan", no_wrap=True)
    t.add_column()
    for k, v in rows:
        t.add_row(k, v)
    return Panel(t, title=title, title_align="left", box=box.ROUNDED)


def _header(s: StatsResponse) -> Text:
    state = Text("● running", style="bold green") if s.get("running") else Text("○ stopped", style="bold yellow")
    out = Text.assemble(("rtrec ", "bold"), (str(s.get("version", "")), "dim"), "  ", state)
    where = s.get("url") or s.get("home")
    if where:
        out.append(f"  {where}", style="dim")
    if s.get("uptime_s") is not None:
        out.append(f"  up {_num(s['uptime_s'], '{:,.0f}')} s", style="dim")
    return out


def _flow(s: StatsResponse) -> Panel:
    ing, lrn, fr = s.get("ingest", {}), s.get("learn", {}), s.get("freshness")
    series = s.get("series") or {}
    rows: list[tuple[str, RenderableType | str]] = [
        ("ingest", f"{_num(ing.get('rate'), '{:,.1f}')} ev/s  {sparkline(series.get('ingest') or [], 30)}"),
        ("learn", f"{_num(lrn.get('rate'), '{:,.1f}')} ev/s  {sparkline(series.get('learn') or [], 30)}"),
        (
            "learner lag",
            f"{_num(lrn.get('lag_events'))} events · {_num(lrn.get('lag_s'), '{:,.2f}')} s",
        ),
        ("freshness (learned)", _pcts(fr["learned"] if fr else None)),
        ("freshness (served)", _pcts(fr["recommend"] if fr else None)),
        (
            "totals",
            f"{_num(ing.get('accepted_total'))} accepted · {_num(ing.get('duplicates_total'))} duplicate · "
            f"{_num(ing.get('rejected_total'))} rejected · {_num(lrn.get('learned_total'))} learned",
        ),
        ("log / learned seq", f"{_num(ing.get('log_seq'))} / {_num(lrn.get('learned_seq'))}"),
    ]
    if lrn.get("quarantined_total"):
        rows.append(
            ("quarantined", Text(f"{_num(lrn['quarantined_total'])} events set aside (quarantined_events)", "yellow"))
        )
    model = s.get("model")
    clean = (model.get("cleaning") if model is not None else None) or {}
    if clean:
        rules = ", ".join(f"{k} {_num(v)}" for k, v in clean.items() if k in RULES and v)
        rows.append(
            (
                "cleaning",
                f"{_num(clean.get('bot_users'))} bot users · set aside: {rules or 'none'} · "
                f"flagged: {_num(sum(v for k, v in clean.items() if k in FLAGS))}",
            )
        )
    priv = s.get("privacy")
    if priv:
        rows.append(("privacy", _privacy(priv)))
    gc = s.get("gc")
    if gc:
        rows.append(("collector", _gc(gc)))
    if lrn.get("error"):
        rows.append(("learner error", Text(str(lrn["error"]), style="red")))
    return _kv("Stream", rows)


def _gc(g: GcStats) -> str:
    """Full collections stop every thread: how many, the longest, and the young ones' p99."""
    full, young_p99 = g["pauses"]["gen2"], g["pauses"]["gen0"]["p99"]
    return (
        f"{_num(full['count'])} full passes (longest {_num(g['max_s']['gen2'] * 1000, '{:.0f}')} ms) · "
        f"young p99 {_num(None if young_p99 is None else young_p99 * 1000, '{:.1f}')} ms · "
        f"{_num(g['frozen'])} objects frozen"
    )


def _privacy(p: PrivacyStatus) -> str:
    parts = ["pseudonymous ids" if p.get("pseudonymize") else "raw ids"]
    if p.get("retention_days") is not None:
        parts.append(f"events kept {_num(p['retention_days'], '{:g}')} days")
    parts.append(f"{_num(p.get('forgotten'))} forgotten since start")
    if p.get("compaction_pending"):
        parts.append("file rewrite pending")
    return " · ".join(parts)


def _quality(s: StatsResponse) -> Panel:
    q = s.get("quality") or {}
    series = s.get("series") or {}
    rows: list[tuple[str, RenderableType | str]] = []
    for key, label, fmt in (
        ("auc", "progressive AUC", "{:.4f}"),
        ("logloss", "log loss", "{:.4f}"),
        ("ctr", "CTR", "{:.2%}"),
    ):
        rows.append((label, f"{_num(q.get(key), fmt):>8}  {sparkline(series.get(key) or [], 40)}"))
    ope = s.get("ope")
    if ope:
        rows.append(("policy value", _ope(ope)))
    rows.append(("model version", _num(s.get("model_version"))))
    ck = s.get("checkpoint")
    if ck:
        rows.append(("last checkpoint", f"seq {_num(ck.get('seq'))} · {_ago(ck.get('created_at'))}"))
    else:
        rows.append(("last checkpoint", DASH))
    return _kv("Model (last hour)", rows)


def _ope(o: LiveOpe) -> str:
    """Observed click rate of the live policy, then its SNIPS estimate from what it logged (the two
    differ when clients echo wrong propensities) and each compared policy's, with intervals."""
    n = o.get("window_requests") or 0
    if not n:
        return f"{DASH} (no settled request with impressions yet; {o.get('pending_requests', 0):,} waiting)"
    parts = [f"observed {_num(o.get('observed_click_rate'), '{:.2%}')} over {n:,} lists"]
    for label, est in (o.get("policies") or {}).items():
        e = est.get("snips")
        if e is None or e.get("value") is None:
            continue
        parts.append(
            f"{label}: {e['value']:.2%} [{_num(e.get('low'), '{:.2%}')}, {_num(e.get('high'), '{:.2%}')}]"
            f" ESS {e.get('ess', 0):,.0f}"
        )
    return " · ".join(parts)


def _internals(s: StatsResponse) -> Panel:
    model = s.get("model")
    labels_s = served_s = fill_s = mix_s = coll_s = items_s = DASH
    if model is not None:
        labels = model["labels"]
        labels_s = (
            f"{_num(labels['pending'])} pending · {_num(labels['retained'])} kept · "
            f"{_num(labels['snapshot_bytes'] / 2**20, '{:,.1f}')} MiB"
        )
        if labels["expired_early"] or labels["dropped"]:
            labels_s += f" · at cap: {_num(labels['expired_early'])} early, {_num(labels['dropped'])} dropped"
        served_s = f"{_num(model['served_snapshots']['used'])} learned as served"
        ui = model["user_items"]
        items_s = f"{_num(ui['pairs'])} pairs · {_num(ui['bytes'] / 2**20, '{:,.1f}')} MiB"
        if ui["evicted"]:
            items_s += f" · {_num(ui['evicted'])} forgotten past {ui['max_per_user']:,} per user"
        replay = model["replay"]
        if replay["capacity"]:
            size, cap = replay["size"], replay["capacity"]
            fill_s = f"{size:,} / {cap:,} ({size / cap:.1%}) · {replay['strategy']}"
        mix = replay["mix"]
        mix_s = f"fresh {mix['fresh']:.0%}, replay {mix['replay']:.0%}"
        coll_s = _num(model["hashing"]["collision_rate"], "{:.2%}")
    text = s.get("text")
    text_s = DASH
    if text is not None:
        text_s = f"{text['status']} · device {text.get('device') or DASH} · queue {_num(text.get('queue'))}"
        if text.get("items_per_s"):
            text_s += f" · {_num(text.get('items_per_s'), '{:,.0f}')} items/s"
    rec = s.get("recommend")
    catalog = s.get("catalog")
    rows: list[tuple[str, RenderableType | str]] = [
        ("impressions", labels_s),
        ("served features", served_s),
        ("items per user", items_s),
        ("replay buffer", fill_s),
        ("sample mix", mix_s),
        ("hash collisions", coll_s),
        ("text encoder", text_s),
        ("catalog", f"{_num(catalog['items'])} items" if catalog else DASH),
        ("recommend", f"{_num(rec['rate'], '{:,.1f}')} req/s · policy {rec['policy']}" if rec else DASH),
        ("recommend latency", _pcts(rec["latency"] if rec else None)),
    ]
    return _kv("Internals", rows)


def _retrieval(s: StatsResponse) -> Panel:
    """Where served items come from, and how well the served ranking places what users then engage with."""
    rec = s.get("recommend")
    served = rec.get("sources", {}) if rec else {}
    total = sum(served.values())
    share = " · ".join(f"{name} {n / total:.0%}" for name, n in served.items() if n) if total else DASH
    model = s.get("model")
    hr_s = recall_s = cv_s = trained_s = DASH
    if model is not None:
        r = model["retrieval"]
        live = r["live"]
        if live["n"]:
            hr, ndcg = _num(live["hr_at_10"], "{:.3f}"), _num(live["ndcg_at_10"], "{:.3f}")
            hr_s = f"HR@10 {hr} · NDCG@10 {ndcg} · n {live['n']:,}"
        recall_s = _num(r["candidate_recall"], "{:.1%}")
        cv_s = (
            f"{r['covisit_items']:,} items · {r['covisit_pairs']:,} pairs · "
            f"{_num(r['covisit_bytes'] / 2**20, '{:,.1f}')} MiB"
        )
        trained_s = ", ".join(f"{name} {st['trained']:,}" for name, st in r["rankers"].items()) or DASH
    rows: list[tuple[str, RenderableType | str]] = [
        ("served from", share),
        ("ranking (live)", hr_s),
        ("candidate recall", recall_s),
        ("co-visitation", cv_s),
        ("ranker trained on", trained_s),
    ]
    return _kv("Retrieval and ranking", rows)


def _top_items(s: StatsResponse) -> Panel:
    t = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
    t.add_column("#", justify="right", style="dim")
    t.add_column("item")
    for i, item in enumerate(s.get("top_items", [])[:10], 1):
        t.add_row(str(i), item)
    return Panel(t, title="Top items now", title_align="left", box=box.ROUNDED)


def _alarms(s: StatsResponse) -> Panel:
    alarms = s.get("drift_alarms", [])
    if not alarms:
        return Panel(Text("none", style="green"), title="Drift alarms", title_align="left", box=box.ROUNDED)
    t = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
    for col in ("seq", "detector", "stat"):
        t.add_column(col)
    for a in alarms[-5:]:
        t.add_row(_num(a["seq"]), a["detector"], _num(a["stat"], "{:.4g}"))
    return Panel(t, title=f"Drift alarms ({len(alarms)})", title_align="left", box=box.ROUNDED, border_style="red")


def render(stats: StatsResponse) -> RenderableType:
    """The whole dashboard for one stats snapshot."""
    side = Table.grid(expand=True)
    side.add_column(ratio=1)
    side.add_column(ratio=1)
    side.add_row(_top_items(stats), _alarms(stats))
    return Group(_header(stats), _flow(stats), _quality(stats), _retrieval(stats), _internals(stats), side)


def live(fetch: Callable[[], StatsResponse], console: Console, refresh_s: float = 1.0) -> None:
    """Redraw ``render(fetch())`` about every ``refresh_s`` until Ctrl-C.

    A failed fetch shows the error in place of the dashboard and keeps retrying.
    """
    with Live(console=console, auto_refresh=False, screen=False, transient=False) as view:
        try:
            while True:
                try:
                    view.update(render(fetch()), refresh=True)
                except Exception as exc:  # the daemon restarting should not end the dashboard
                    view.update(Text(f"cannot read stats: {exc}", style="red"), refresh=True)
                time.sleep(refresh_s)
        except KeyboardInterrupt:
            return
