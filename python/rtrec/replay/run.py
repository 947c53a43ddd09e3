"""``rtrec replay``: stream a historical log through the learner, in timestamp order.

Events load through the event log (ordered by ``ts``) and go through the same
:class:`~rtrec.learn.OnlineLearner` the daemon runs. Every model is scored on each chunk
before it learns from it (progressive validation), so the metrics are what production
would have seen. Baselines and text ablations learn side by side on the same examples.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rtrec.config import Config
from rtrec.errors import InvalidInputError
from rtrec.jsonable import jsonable
from rtrec.labels import EVENT, FOLLOWUP
from rtrec.learn import OnlineLearner, Variant, default_variant
from rtrec.learn import stats as learner_stats
from rtrec.learn.featurize import Batch
from rtrec.learn.metrics import auc, calibration, group_auc, logloss, rank_metrics, rank_of
from rtrec.learn.step import Resolving
from rtrec.learn.trainer import COUNTS
from rtrec.ope.offline import item_text, replay_capture
from rtrec.rank.pipeline import exclusions, rank_variants
from rtrec.replay.baselines import Popularity
from rtrec.retrieve.sources import SOURCES

BASELINES = ("popularity", "popularity_all_time", "static", "linear")
# The language-model pieces (see README): 1 item text features, 2 user interest vector,
# 3 text prior and distillation. Each gets a row with that piece switched the other way.
PIECES = ("item_text", "user_vector", "distill")


def ablations(main: Variant) -> list[Variant]:
    """``rtrec_no_text`` (every piece off), then one row per piece flipped from ``main``."""
    out = [replace(main, name="rtrec_no_text", item_text=False, user_vector=False, distill=False)]
    for piece in PIECES:
        on = getattr(main, piece)
        flipped: dict[str, Any] = {piece: not on}
        out.append(replace(main, name=f"rtrec_{'no' if on else 'with'}_{piece}", **flipped))
    return out


def replay_variants(cfg: Config, total_events: int, *, text: bool, with_ablations: bool = True) -> list[Variant]:
    """The product model first, then the baselines, then (with text) the ablations."""
    main = default_variant(cfg)
    static_n = max(1, int(total_events * cfg.replay.static_fraction))
    out = [
        main,
        Variant("popularity", kind="popularity", replay=False),
        Variant("popularity_all_time", kind="popularity_all_time", replay=False),
        # Frozen after the first part of the stream, and served without the linear model
        # (which never stops learning): the model as a batch-trained system would ship it.
        replace(main, name="static", train_examples=static_n, linear_blend=0.0),
        Variant("linear", kind="linear", item_text=False, user_vector=False, distill=False, replay=False),
    ]
    if text and with_ablations:
        out += ablations(main)
    return out


@dataclass
class _Collected:
    labels: list[np.ndarray] = field(default_factory=list)
    ts: list[np.ndarray] = field(default_factory=list)
    request: list[np.ndarray] = field(default_factory=list)
    seq: list[np.ndarray] = field(default_factory=list)
    shown: list[np.ndarray] = field(default_factory=list)
    cold_item: list[np.ndarray] = field(default_factory=list)
    cold_user: list[np.ndarray] = field(default_factory=list)
    preds: dict[str, list[np.ndarray]] = field(default_factory=dict)
    ranking: dict[str, _Ranking] = field(default_factory=dict)  # per model row
    sources: dict[str, _Ranking] = field(default_factory=dict)  # per candidate source alone
    rank_seconds: float = 0.0


@dataclass
class _Ranking:
    """Where each sampled target landed in one list, and what every top-10 showed."""

    ranks: list[int] = field(default_factory=list)
    cold: list[bool] = field(default_factory=list)
    new: list[bool] = field(default_factory=list)
    shown: set[int] = field(default_factory=set)

    def add(self, items: np.ndarray, target: int, cold: bool, new: bool) -> None:
        """``items``: the list, best first (at least its top 50)."""
        self.ranks.append(rank_of(items[:50], target))
        self.cold.append(cold)
        self.new.append(new)
        self.shown.update(items[:10].tolist())

    def metrics(self, n_catalog: int) -> dict[str, float | int | None]:
        r = np.asarray(self.ranks, np.int64)
        hr, ndcg = rank_metrics(self.ranks)
        cold, new = np.asarray(self.cold, bool), np.asarray(self.new, bool)
        return {
            "hr_at_10": hr,
            "ndcg_at_10": ndcg,
            "recall_at_50": float((r < 50).mean()) if len(r) else None,
            "coverage_at_10": len(self.shown) / n_catalog if n_catalog else None,
            "cold_hr_at_10": float((r[cold] < 10).mean()) if cold.any() else None,
            # Items nobody had engaged with before: only their text (or chance) can find them.
            "new_hr_at_10": float((r[new] < 10).mean()) if new.any() else None,
            "ranked_events": len(r),
            "cold_ranked_events": int(cold.sum()),
            "new_ranked_events": int(new.sum()),
        }


@dataclass
class ReplayReport:
    """The summary written to ``report.json``."""

    data: dict[str, Any]
    report_dir: Path
    checkpoint: Path

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        return self.data["models"]


def _metrics(y: np.ndarray, p: np.ndarray, probabilistic: bool) -> dict[str, float | None]:
    return {
        "auc": auc(y, p),
        "logloss": logloss(y, p) if probabilistic else None,
        "calibration": calibration(y, p) if probabilistic else None,
    }


def run_replay(
    log_path: str | Path,
    cfg: Config,
    *,
    items_path: str | Path | None = None,
    report_dir: str | Path = "report",
    home: str | Path | None = None,
    ablations: bool = True,
    progress: Callable[[int, int], None] | None = None,
    status: Callable[[str], None] | None = None,
) -> ReplayReport:
    """Replay ``log_path`` and write ``report.json``, ``report.png`` and a checkpoint to ``report_dir``."""
    from rtrec.events import EventLog

    say = status or (lambda _msg: None)
    log_path = Path(log_path)
    if not log_path.exists():
        raise InvalidInputError(f"LOG: {log_path} does not exist")
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    tmp = None
    if home is None:
        tmp = tempfile.TemporaryDirectory(prefix="rtrec-replay-")
        db_path = Path(tmp.name) / "rtrec.duckdb"
    else:
        db_path = Path(home) / "rtrec.duckdb"
    try:
        log = EventLog.open(db_path, cfg.events)
        try:
            return _run(log, log_path, items_path, cfg, report_dir, home, ablations, progress, say)
        finally:
            log.close()
    finally:
        if tmp is not None:
            tmp.cleanup()


def _run(
    log: Any,
    log_path: Path,
    items_path: str | Path | None,
    cfg: Config,
    report_dir: Path,
    home: str | Path | None,
    ablations: bool,
    progress: Callable[[int, int], None] | None,
    say: Callable[[str], None],
) -> ReplayReport:
    t_load = time.perf_counter()
    # The replay covers the whole log: with a home that already holds some events (this
    # file, ingested before), they are learned again in sequence order, from the start.
    first = 0
    summary = log.ingest_file(log_path, order_by_ts=True)
    if items_path is not None:
        log.upsert_items(items_path)
    say(f"loaded {summary.accepted} events ({summary.duplicates} duplicates, {len(summary.rejected)} rejected)")
    load_s = time.perf_counter() - t_load
    items = log.items()
    text = item_text(log, items, cfg, say)
    total = log.count_events() - first
    variants = replay_variants(cfg, total, text=text.dim > 0, with_ablations=ablations)
    learner = OnlineLearner(cfg, text_dim=text.dim, variants=variants)
    if items.num_rows:
        learner.set_catalog(items)
    if text.matrix is not None:
        learner.set_item_embeddings(text.ids, text.matrix)
    # Off-policy estimates of the served model, when the log has propensities (ope.offline).
    ope = replay_capture(log, learner, cfg)
    col = _Collected()
    rng = np.random.default_rng(cfg.learner.seed)
    n_catalog = items.num_rows
    threshold = cfg.replay.cold_threshold
    popular = Popularity(cfg.learner.counter_half_life_s)

    class Ranking:
        """Top-K evaluation: each model row ranks a sample of positives as it would serve them."""

        def pick(self, r: Resolving) -> np.ndarray:
            popular.start(r)
            if not n_catalog or cfg.replay.ranking_sample <= 0:
                return np.zeros(0, np.int64)
            # A follow-up (an add-to-cart after its click) is the same showing's item again: not ranked twice.
            first = (r.labels >= 0.5) & (r.origin != FOLLOWUP)
            return np.flatnonzero(first & (rng.random(len(r)) < cfg.replay.ranking_sample))

        def rank(self, r: Resolving, row: int) -> None:
            t0 = time.perf_counter()
            users, items = learner.featurizer.users.ids, learner.featurizer.items.ids
            user, item = users[r.user_idx[row]], items[r.item_idx[row]]
            popular.upto(row)
            _rank_one(learner, user, item, float(r.ts[row]), n_catalog, threshold, col, popular)
            col.rank_seconds += time.perf_counter() - t0

    def on_chunk(b: Batch) -> None:
        col.labels.append(b.labels.copy())
        col.ts.append(b.ts.copy())
        col.request.append(b.request.copy() if b.request is not None else np.zeros(len(b), np.int64))
        col.seq.append(b.seq.copy())
        col.shown.append(b.origin != EVENT if b.origin is not None else np.zeros(len(b), bool))
        col.cold_item.append(b.item_n < threshold)
        col.cold_user.append(b.user_n < threshold)

    learner.evaluator = Ranking()
    learner.on_chunk = on_chunk
    done = 0
    t0 = time.perf_counter()
    for batch in log.tail(first, batch_size=max(cfg.learner.batch_size * 16, 4096)):
        res = learner.learn(batch, keep_predictions=True)
        for name, ps in res.predictions.items():
            col.preds.setdefault(name, []).extend(ps)
        done += batch.num_rows
        if progress is not None:
            progress(done, total)
    # The drained impressions went through on_chunk too: their predictions must be kept alongside.
    res = learner.drain(keep_predictions=True)
    for name, ps in res.predictions.items():
        col.preds.setdefault(name, []).extend(ps)
    learn_s = time.perf_counter() - t0 - (ope.seconds if ope is not None else 0.0)
    ckpt = learner.save(report_dir / f"learner-{learner.last_seq:012d}.ckpt")
    if home is not None:
        from rtrec.serve.checkpoints import CHECKPOINT_DIR

        learner.save(Path(home) / CHECKPOINT_DIR / f"learner-{learner.last_seq:012d}.ckpt")
    data = _report(cfg, learner, col, total, load_s, learn_s, text.info, summary, n_catalog)
    if ope is not None:
        data["ope"] = ope.report().as_dict()
    (report_dir / "report.json").write_text(json.dumps(jsonable(data, digits=6), indent=2) + "\n")
    _plot(data, report_dir / "report.png")
    return ReplayReport(data=jsonable(data, digits=6), report_dir=report_dir, checkpoint=ckpt)


def _rank_one(
    learner: OnlineLearner,
    user_id: str,
    item_id: str,
    ts: float,
    n_catalog: int,
    threshold: int,
    col: _Collected,
    popular: Popularity,
) -> None:
    """Rank the positive ``item_id`` for its user as each model row would serve it.

    The served pipeline and its ablations (``learner.rankers``) rank their retrieved
    candidates; every other model ranks all catalog items the user has not interacted with,
    the popularity rows by ``popular``'s counts as of this event (decayed, and all-time in
    ``popularity_all_time``). Each candidate source's own list is kept too.
    """
    f = learner.featurizer
    known = f.items.get(item_id)  # the learner registered every item of the chunk before this hook
    assert known is not None
    target = int(known)
    # Cold: fewer than ``threshold`` earlier examples of the item, counted as of this event.
    cold = bool(popular.examples(np.array([target]))[0] < threshold)
    new = bool(learner.retrieval.count[target] == 0) if target < len(learner.retrieval.count) else True
    user = f.users.get(user_id)
    others = [n for n in learner.trainers if n not in learner.rankers]
    if others:
        # What the user had an example of before this event (as the pipeline rows exclude): the
        # featurizer's own sets move once per learn chunk, and a session's earlier items would stay in.
        seen = exclusions(learner, user, point_in_time=True)
        keep = np.ones(n_catalog, dtype=bool)
        keep[seen[seen < n_catalog]] = False
        cand = np.flatnonzero(keep).astype(np.int64)
        if target >= n_catalog or not keep[target]:
            cand = np.append(cand, target)
        cb = learner.candidates(user_id, cand, ts)
        # The popularity rows rank by counts as of this event (see rtrec.replay.baselines).
        for name in others:
            kind = learner.trainers[name].variant.kind
            if kind == "popularity":
                s = popular.decayed(cand, ts)
            elif kind == "popularity_all_time":
                s = popular.all_time(cand)
            else:
                s = learner.trainers[name].predict(cb, f)
            # Ties count against the model: a target tied with others ranks after them all.
            order = np.lexsort((cand == target, -s))
            col.ranking.setdefault(name, _Ranking()).add(cand[order[:50]], target, cold, new)
    if learner.rankers:
        ranked = rank_variants(learner, user_id, ts, list(learner.rankers), point_in_time=True)
        for name in learner.rankers:
            rk = ranked.get(name)
            items = rk.cands.items[rk.order()] if rk is not None else np.zeros(0, np.int64)
            col.ranking.setdefault(name, _Ranking()).add(items, target, cold, new)
        lists = next(iter(ranked.values())).cands.lists if ranked else {}
        for source in SOURCES:
            col.sources.setdefault(source, _Ranking()).add(lists.get(source, np.zeros(0, np.int64)), target, cold, new)


def _one_row_per_showing(col: _Collected, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows to evaluate: each impression once, with its eventual label, and every other example.

    An impression can be learned more than once (a negative when its window passes, then a
    late positive; a click, then an add-to-cart): all those rows carry the prediction made
    when it was shown. Evaluation counts the showing once, positive if any of its labels is.
    """
    if not col.seq:
        return np.arange(len(y)), y
    seq, shown = np.concatenate(col.seq), np.concatenate(col.shown)
    rows = np.flatnonzero(shown)
    if not len(rows):
        return np.arange(len(y)), y
    uniq, first, inverse = np.unique(seq[rows], return_index=True, return_inverse=True)
    label = np.zeros(len(uniq), y.dtype)
    np.maximum.at(label, inverse, y[rows])
    y = y.copy()
    y[rows[first]] = label
    keep = np.sort(np.concatenate([np.flatnonzero(~shown), rows[first]]))
    return keep, y[keep]


def _report(
    cfg: Config,
    learner: OnlineLearner,
    col: _Collected,
    total: int,
    load_s: float,
    learn_s: float,
    text_info: dict[str, Any] | None,
    summary: Any,
    n_catalog: int,
) -> dict[str, Any]:
    y = np.concatenate(col.labels) if col.labels else np.zeros(0)
    ts = np.concatenate(col.ts) if col.ts else np.zeros(0)
    cold_i = np.concatenate(col.cold_item) if col.cold_item else np.zeros(0, bool)
    cold_u = np.concatenate(col.cold_user) if col.cold_user else np.zeros(0, bool)
    req = np.concatenate(col.request) if col.request else np.zeros(0, np.int64)
    keep, y = _one_row_per_showing(col, y)
    ts, cold_i, cold_u, req = ts[keep], cold_i[keep], cold_u[keep], req[keep]
    grouped = bool((req != 0).any())
    models: dict[str, Any] = {}
    windows: list[dict[str, Any]] = []
    n_win = max(1, min(cfg.replay.windows, len(y) // 200 or 1))
    bounds = np.linspace(0, len(y), n_win + 1).astype(int)
    for w in range(n_win):
        lo, hi = bounds[w], bounds[w + 1]
        windows.append(
            {
                "start_ts": float(ts[lo]) if hi > lo else None,
                "end_ts": float(ts[hi - 1]) if hi > lo else None,
                "examples": int(hi - lo),
                "positive_rate": float(y[lo:hi].mean()) if hi > lo else None,
                "models": {},
            }
        )
    for name, tr in learner.trainers.items():
        p = np.concatenate(col.preds[name])[keep] if col.preds.get(name) else np.zeros(0)
        probabilistic = tr.variant.kind not in COUNTS
        row: dict[str, Any] = _metrics(y, p, probabilistic)
        row["group_auc"] = group_auc(y[req != 0], p[req != 0], req[req != 0]) if grouped else None
        row.update(
            {
                "cold_auc": auc(y[cold_i], p[cold_i]),
                "cold_logloss": logloss(y[cold_i], p[cold_i]) if probabilistic else None,
                "cold_user_auc": auc(y[cold_u], p[cold_u]),
                "cold_user_logloss": logloss(y[cold_u], p[cold_u]) if probabilistic else None,
                **col.ranking.get(name, _Ranking()).metrics(n_catalog),
                "ranking": "pipeline" if name in learner.rankers else "catalog",
                "kind": tr.variant.kind,
                "drift_alarms": len(tr.alarms),
            }
        )
        models[name] = row
        for w, win in enumerate(windows):
            lo, hi = bounds[w], bounds[w + 1]
            win["models"][name] = _metrics(y[lo:hi], p[lo:hi], probabilistic)
    learn_only = max(learn_s - col.rank_seconds, 1e-9)
    return {
        "events": int(total),
        "examples": int(sum(len(a) for a in col.labels)),
        "evaluated": len(y),
        "requests": len(np.unique(req[req != 0])) if grouped else 0,
        "positive_rate": float(y.mean()) if len(y) else None,
        "cold_item_examples": int(cold_i.sum()),
        "cold_user_examples": int(cold_u.sum()),
        "events_per_s": total / learn_only,
        "seconds": {"load": load_s, "learn": learn_only, "ranking_eval": col.rank_seconds},
        "rejected_events": len(summary.rejected),
        "duplicate_events": summary.duplicates,
        "models": models,
        "sources": {name: r.metrics(n_catalog) for name, r in col.sources.items()},
        "retrieval": learner_stats.retrieval(learner),
        "windows": windows,
        "drift_alarms": learner.drift_alarms,
        "text": text_info,
        "config": {
            "features": {"bits": cfg.features.bits, "namespaces": list(cfg.features.namespaces)},
            "learner": {"batch_size": cfg.learner.batch_size, "replay_ratio": cfg.learner.replay_ratio},
            "replay": {"ranking_sample": cfg.replay.ranking_sample, "cold_threshold": cfg.replay.cold_threshold},
        },
    }


def _plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wins = data["windows"]
    x = np.arange(1, len(wins) + 1)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for k, name in enumerate(data["models"]):
        colour = f"C{k % 10}"  # one colour per model in both panels, whichever rows a panel skips
        aucs = [w["models"][name]["auc"] for w in wins]
        ax1.plot(x, [np.nan if a is None else a for a in aucs], marker="o", ms=3, label=name, color=colour)
        lls = [w["models"][name]["logloss"] for w in wins]
        if any(v is not None for v in lls):
            ax2.plot(x, [np.nan if v is None else v for v in lls], marker="o", ms=3, label=name, color=colour)
    ax1.set_ylabel("progressive AUC")
    ax2.set_ylabel("progressive log loss")
    ax2.set_xlabel(f"time window (equal numbers of examples, {data['examples']} in all)")
    ax1.legend(fontsize=8, ncol=2)
    ax1.grid(alpha=0.3)
    ax2.grid(alpha=0.3)
    fig.suptitle("rtrec replay: progressive validation")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
