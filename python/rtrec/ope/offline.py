"""Off-policy evaluation on a log, point in time: what each target policy would have earned on the logged requests.

A fresh :class:`~rtrec.learn.OnlineLearner` streams the log in sequence order, as ``rtrec
replay`` does. At the start of each learn step (``learner.before_chunk``, so before the
model has seen anything of the step's events, the outcomes of its requests included) every
logged request that opens in the step is ranked as the daemon would have served it then:

- a user the learner knows: the retrieve-and-rank pipeline
  (:func:`rtrec.rank.pipeline.rank_variants` with ``point_in_time=True``); the exploration
  policy works on the ranker's scores;
- a user it does not know yet (a *stranger*): the CTR model's click probabilities over every
  item the learner knows, which is what serving scores a stranger with (serving also blends
  in popularity and freshness; those are left out here). Strangers are evaluated, not
  skipped, and counted (``strangers``).

For each target :class:`~rtrec.ope.policies.PolicySpec` the list marginals over those
candidates, with ``k`` the number of items the logging policy showed in the request, give
each logged shown item its target probability (0 when it is not a candidate) and the
request its direct-method term ``sum_i pi(i) q(i)`` (``q``: the CTR model's probability).
Thompson sampling uses ``uncertainty = 1 / sqrt(1 + the item's examples)``, as serving does.

**Logged requests.** An impression with a ``request_id`` and a ``propensity`` in (0, 1] is
one logged shown item of its request. **Reward**: 1 when the same ``(request_id, item_id)``
has a positive event anywhere in the log (the types in ``labels.positive``, or a rating at
or above ``labels.rating_threshold``), else 0. A first pass over the log counts each
request's shown items and collects the positive pairs; the learning pass then captures
the requests. A request is *incomplete* (skipped, and counted) when the learner set some of
its impressions aside (cleaning), so that the captured list is shorter than the logged one.

**Freshness.** The hook runs once per learn step, ``learner.batch_size`` events (1,024 by
default): the model a request is ranked with is at most that many events behind it. (``rtrec
replay`` reads the log in larger batches, but the learner cuts them into steps of the
same size, so both see the same freshness.)

**Sampling.** ``sample`` keeps a share of the requests, chosen by a hash of the request id
(deterministic; the same requests whatever the chunking). Ranking a request costs about 7 ms
on one core (the simulator's log, mostly retrieval and the CTR features of every candidate),
about what learning 70 events costs: ``rtrec replay`` evaluates a sample of about
:data:`REPLAY_REQUESTS` requests, which adds seconds to a replay of any length.

The logging policy's own value (every weight 1) is the observed click rate of the evaluated
shown items, exactly: a check that the plumbing is sound.
"""

from __future__ import annotations

import json
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rtrec.config import Config, LabelsConfig
from rtrec.errors import InvalidInputError
from rtrec.learn.columns import epoch_seconds
from rtrec.ope.estimators import Estimate, Logged, estimate_all
from rtrec.ope.policies import PolicySpec, item_uncertainty
from rtrec.rank.pipeline import rank_variants

if TYPE_CHECKING:
    from rtrec.events import EventLog
    from rtrec.learn import OnlineLearner

__all__ = ["LogScan", "OffPolicy", "OffPolicyReport", "evaluate", "evaluate_log", "replay_capture", "scan_log"]

REPLAY_REQUESTS = 1_000  # rtrec replay ranks about this many logged requests (at most) for OPE
NO_PROPENSITY_HINT = (
    "log each shown item as an impression with the request_id and the propensity that /v1/recommend "
    "returned for it (echo them into the impression event)"
)


def configured_policies(cfg: Config) -> list[PolicySpec]:
    """The served exploration (``serve.exploration`` with its parameter), then greedy (``none``)."""
    served = PolicySpec.served(cfg.serve.exploration, cfg.serve)
    return [served] if served.kind == "none" else [served, PolicySpec("none")]


# -- the first pass: list lengths and rewards ---------------------------------------------------------


@dataclass
class LogScan:
    """What the learning pass needs to know ahead: each request's list length and the positive pairs."""

    slots: Counter[str] = field(default_factory=Counter)  # request_id -> logged shown items
    positives: set[tuple[str, str]] = field(default_factory=set)  # (request_id, item_id) with positive feedback
    last_seq: int = 0  # of the last logged shown item: the learning pass can stop after it

    @property
    def impressions(self) -> int:
        return sum(self.slots.values())


def logged_shown(t: pa.Table | pa.RecordBatch) -> pa.Array:
    """Mask of the rows that are logged shown items: impressions with a request id and a propensity in (0, 1]."""
    p = t.column("propensity")
    imp = pc.equal(pc.cast(t.column("event_type"), pa.string()), "impression")
    ok = pc.and_(pc.greater(p, 0.0), pc.less_equal(p, 1.0))
    return pc.fill_null(pc.and_(pc.and_(imp, pc.is_valid(t.column("request_id"))), ok), False)


def scan_log(batches: Iterable[pa.RecordBatch], labels: LabelsConfig) -> LogScan:
    """Count each request's logged shown items and collect its positively labelled items (one pass)."""
    out = LogScan()
    kinds = pa.array(sorted(set(labels.positive) - {"rating"}), pa.string())
    for b in batches:
        shown = logged_shown(b)
        rid = b.column("request_id")
        out.slots.update(pc.filter(rid, shown).to_pylist())
        if pc.any(shown).as_py():
            out.last_seq = max(out.last_seq, int(pc.max(pc.filter(b.column("seq"), shown)).as_py()))
        et = pc.cast(b.column("event_type"), pa.string())
        rating = pc.and_kleene(pc.equal(et, "rating"), pc.greater_equal(b.column("value"), labels.rating_threshold))
        pos = pc.fill_null(pc.and_kleene(pc.or_kleene(pc.is_in(et, value_set=kinds), rating), pc.is_valid(rid)), False)
        if pc.any(pos).as_py():
            pairs = zip(pc.filter(rid, pos).to_pylist(), pc.filter(b.column("item_id"), pos).to_pylist(), strict=True)
            out.positives.update(pairs)
    return out


# -- the capture, in the learn step ------------------------------------------------------------------


@dataclass
class _Request:
    """A request whose shown items are still coming (its impressions may straddle two learn steps)."""

    k: int
    rows: dict[str, dict[int, int]] = field(default_factory=dict)  # model -> item index -> candidate row
    probs: dict[str, np.ndarray] = field(default_factory=dict)  # model -> CTR probability per candidate
    incl: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (model, policy) -> inclusion
    direct: dict[tuple[str, str], float] = field(default_factory=dict)
    items: list[str] = field(default_factory=list)
    props: list[float] = field(default_factory=list)
    q: dict[str, list[float]] = field(default_factory=dict)
    target: dict[tuple[str, str], list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class OffPolicyReport:
    """Estimates per target policy and model, with the logging policy's own value and what was left out."""

    policies: list[str]  # labels, in the order asked
    models: list[str]
    logging: dict[str, Estimate]  # ips and snips with every weight 1: the observed click rate
    values: dict[str, dict[str, dict[str, Estimate]]]  # policy label -> model -> estimator -> estimate
    logged_requests: int  # requests with logged shown items in the log
    requests: int  # evaluated
    shown: int
    clicks: int
    sample: float
    not_sampled: int
    incomplete: int
    strangers: int  # evaluated requests of users the learner did not know yet (CTR model over known items)
    empty: int  # evaluated requests with no candidate at all (every target probability 0)
    chunk: int  # events per learn step: how stale the model may be
    clip: float | None
    seconds: float  # ranking and marginals (not learning)

    @property
    def observed_rate(self) -> float | None:
        return self.clicks / self.shown if self.shown else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "shown": self.shown,
            "clicks": self.clicks,
            "observed_click_rate": self.observed_rate,
            "logging": {k: e.as_dict() for k, e in self.logging.items()},
            "policies": {
                label: {m: {k: e.as_dict() for k, e in est.items()} for m, est in per.items()}
                for label, per in self.values.items()
            },
            "logged_requests": self.logged_requests,
            "sample": self.sample,
            "skipped": {"not_sampled": self.not_sampled, "incomplete": self.incomplete},
            "strangers": self.strangers,
            "empty": self.empty,
            "chunk_events": self.chunk,
            "clip": self.clip,
            "seconds": {"ranking": self.seconds},
        }


class OffPolicy:
    """Captures each logged request before the learner learns it; :meth:`report` estimates at the end.

    Set ``learner.before_chunk = capture.before_chunk``. ``models`` are trainer names with a
    ranker (``learner.rankers``).
    """

    def __init__(
        self,
        learner: OnlineLearner,
        policies: Sequence[PolicySpec],
        scan: LogScan,
        *,
        models: Sequence[str] | None = None,
        sample: float = 1.0,
        seed: int = 0,
    ) -> None:
        if not 0.0 < sample <= 1.0:
            raise InvalidInputError(f"sample: must be in (0, 1], got {sample}")
        self.learner = learner
        self.policies = list(dict.fromkeys(policies))
        self.models = list(models) if models is not None else [learner.main]
        self.scan = scan
        self.sample = sample
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.strangers = self.empty = 0
        self.seconds = 0.0
        self._open: dict[str, _Request] = {}
        self._slots: list[int] = []
        self._request: list[int] = []
        self._keys: list[tuple[str, str]] = []
        self._props: list[float] = []
        self._q: dict[str, list[float]] = {m: [] for m in self.models}
        self._target: dict[tuple[str, str], list[float]] = {k: [] for k in self._pairs()}
        self._direct: dict[tuple[str, str], list[float]] = {k: [] for k in self._pairs()}

    def _pairs(self) -> list[tuple[str, str]]:
        return [(m, p.label) for m in self.models for p in self.policies]

    def sampled(self, request_id: str) -> bool:
        if self.sample >= 1.0:
            return True
        return zlib.crc32(f"{self.seed}:{request_id}".encode()) < self.sample * 2**32

    def before_chunk(self, t: pa.Table) -> None:
        """Rank the requests that open in this learn step, and note every logged shown item in it."""
        start = time.perf_counter()
        t = t.filter(logged_shown(t))
        if t.num_rows:
            rid = t.column("request_id").to_pylist()
            groups: dict[str, list[int]] = {}
            for row, r in enumerate(rid):
                if r in self.scan.slots and self.sampled(r):
                    groups.setdefault(r, []).append(row)
            if groups:
                users = pc.cast(t.column("user_id"), pa.string()).to_pylist()
                items = pc.cast(t.column("item_id"), pa.string()).to_pylist()
                props = t.column("propensity").to_pylist()
                ts = epoch_seconds(t.column("ts"))
                context = t.column("context").to_pylist()
                for r, rows in groups.items():
                    req = self._open.get(r)
                    if req is None:
                        first = rows[0]
                        req = self._open[r] = self._rank(r, users[first], float(ts[first]), _context(context[first]))
                    self._add(r, req, [items[j] for j in rows], [float(props[j]) for j in rows])
        self.seconds += time.perf_counter() - start

    def _rank(self, request_id: str, user: str, ts: float, context: dict[str, Any] | None) -> _Request:
        learner = self.learner
        req = _Request(k=self.scan.slots[request_id])
        found: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        if learner.featurizer.users.get(user) is not None:
            ranked = rank_variants(learner, user, ts, self.models, point_in_time=True, context=context, at_least=req.k)
            found = {n: (rk.cands.items, rk.scores, rk.probs, rk.batch.item_n) for n, rk in ranked.items()}
        else:
            self.strangers += 1
            for name in self.models:
                _, p, batch = learner.score_batch(user, None, context, now=ts, variant=name)
                if batch is not None:
                    p = np.asarray(p, np.float64)
                    found[name] = (np.arange(len(p)), p, p, batch.item_n)
        if not found:
            self.empty += 1
        none = np.zeros(0)
        for name in self.models:
            cand, scores, probs, item_n = found.get(name, (none.astype(np.int64), none, none, none))
            req.rows[name] = {i: r for r, i in enumerate(cand.tolist())}
            req.probs[name] = np.asarray(probs, np.float64)
            req.q[name] = []
            unc = item_uncertainty(item_n)
            for spec in self.policies:
                incl = spec.marginals(np.asarray(scores, np.float64), req.k, uncertainty=unc, rng=self.rng).inclusion
                key = (name, spec.label)
                req.incl[key], req.direct[key], req.target[key] = incl, float(incl @ req.probs[name]), []
        return req

    def _add(self, request_id: str, req: _Request, items: list[str], props: list[float]) -> None:
        f = self.learner.featurizer
        for item, p in zip(items, props, strict=True):
            j = f.items.get(item)
            req.items.append(item)
            req.props.append(p)
            for name in self.models:
                row = req.rows[name].get(j) if j is not None else None
                req.q[name].append(0.0 if row is None else float(req.probs[name][row]))
                for spec in self.policies:
                    key = (name, spec.label)
                    req.target[key].append(0.0 if row is None else float(req.incl[key][row]))
        if len(req.items) >= req.k:
            del self._open[request_id]
            x = len(self._slots)
            self._slots.append(len(req.items))
            self._request.extend([x] * len(req.items))
            self._keys.extend((request_id, i) for i in req.items)
            self._props.extend(req.props)
            for name in self.models:
                self._q[name].extend(req.q[name])
            for key in self._pairs():
                self._target[key].extend(req.target[key])
                self._direct[key].append(req.direct[key])

    def report(self, clip: float | None = None) -> OffPolicyReport:
        """Estimates over the requests captured so far (rewards joined from the scan)."""
        request = np.asarray(self._request, np.int64)
        reward = np.fromiter((k in self.scan.positives for k in self._keys), np.float64, len(self._keys))
        logging = np.asarray(self._props, np.float64)
        slots = np.asarray(self._slots, np.int64)
        values: dict[str, dict[str, dict[str, Estimate]]] = {p.label: {} for p in self.policies}
        for name, label in self._pairs():
            data = Logged(
                request,
                reward,
                logging,
                np.asarray(self._target[(name, label)], np.float64),
                slots,
                model=np.asarray(self._q[name], np.float64),
                direct=np.asarray(self._direct[(name, label)], np.float64),
            )
            values[label][name] = estimate_all(data, clip)
        logged = len(self.scan.slots)
        not_sampled = 0 if self.sample >= 1.0 else sum(not self.sampled(r) for r in self.scan.slots)
        return OffPolicyReport(
            policies=[p.label for p in self.policies],
            models=list(self.models),
            logging=estimate_all(Logged(request, reward, logging, logging, slots)),
            values=values,
            logged_requests=logged,
            requests=len(slots),
            shown=len(reward),
            clicks=int(reward.sum()),
            sample=self.sample,
            not_sampled=not_sampled,
            incomplete=logged - not_sampled - len(slots),
            strangers=self.strangers,
            empty=self.empty,
            chunk=self.learner.cfg.learner.batch_size,
            clip=clip,
            seconds=self.seconds,
        )


def _context(text: Any) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# -- whole runs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemText:
    """Item text embeddings for a learner (``dim`` 0: none)."""

    ids: list[str]
    matrix: np.ndarray | None
    dim: int
    info: dict[str, Any] | None


def item_text(
    log: EventLog, items: pa.Table, cfg: Config, say: Callable[[str], None], *, refresh: bool = True
) -> ItemText:
    """The catalog's text embeddings: encoded now where needed (``refresh``), else as the log stores them."""
    text = [n for n in ("title", "description") if n in items.column_names and items.column(n).null_count < len(items)]
    if not (cfg.text.enabled and text):
        return ItemText([], None, 0, None)
    from rtrec.text import EmbeddingCache, load_encoder

    enc = load_encoder(cfg.text)
    cache = EmbeddingCache(log.cursor, enc, cfg.text.template)
    info: dict[str, Any] = {}
    if refresh:
        say(f"encoding {items.num_rows} items with {enc.name} on {enc.device}")
        info = cache.refresh(items)
    ids, matrix = cache.all()
    return ItemText(ids, matrix, enc.dim, {**info, "model": enc.name, "device": enc.device, "dim": enc.dim})


def replay_capture(log: EventLog, learner: OnlineLearner, cfg: Config) -> OffPolicy | None:
    """Hook OPE of the pipeline rows (configured exploration and greedy) into a replay; None without propensities."""
    scan = scan_log(log.tail(0), cfg.labels)
    if not scan.slots:
        return None
    sample = min(1.0, REPLAY_REQUESTS / len(scan.slots))
    # Every served-pipeline row (rtrec and its text ablations): one retrieval and feature pass serves them all.
    models = list(learner.rankers) or [learner.main]
    cap = OffPolicy(learner, configured_policies(cfg), scan, models=models, sample=sample, seed=cfg.learner.seed)
    learner.before_chunk = cap.before_chunk
    return cap


def evaluate_log(
    log: EventLog,
    cfg: Config,
    policies: Sequence[PolicySpec] | None = None,
    *,
    clip: float | None = None,
    sample: float = 1.0,
    refresh_text: bool = True,
    progress: Callable[[int, int], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> OffPolicyReport:
    """Stream ``log`` through a fresh learner and estimate each policy (default: :func:`configured_policies`)."""
    from rtrec.learn import OnlineLearner

    say = say or (lambda _msg: None)
    if clip is not None and not clip > 0:
        raise InvalidInputError(f"clip: must be positive, got {clip}")
    if not 0.0 < sample <= 1.0:
        raise InvalidInputError(f"sample: must be in (0, 1], got {sample}")
    scan = scan_log(log.tail(0), cfg.labels)
    if not scan.slots:
        raise InvalidInputError(
            "LOG: no impression carries a request_id and a propensity, so no policy can be evaluated off-policy",
            hint=NO_PROPENSITY_HINT,
        )
    say(f"{len(scan.slots):,} logged requests, {scan.impressions:,} shown items, {len(scan.positives):,} clicked")
    items = log.items()
    text = item_text(log, items, cfg, say, refresh=refresh_text)
    learner = OnlineLearner(cfg, text_dim=text.dim)
    if items.num_rows:
        learner.set_catalog(items)
    if text.matrix is not None:
        learner.set_item_embeddings(text.ids, text.matrix)
    cap = OffPolicy(learner, policies or configured_policies(cfg), scan, sample=sample, seed=cfg.learner.seed)
    learner.before_chunk = cap.before_chunk
    total, done = log.count_events(), 0
    for batch in log.tail(0, batch_size=cfg.learner.batch_size):
        learner.learn(batch)
        done += batch.num_rows
        if progress is not None:
            progress(done, total)
        if int(batch.column("seq")[batch.num_rows - 1].as_py()) >= scan.last_seq:
            break  # every logged request is captured: the rest of the log cannot change an estimate
    return cap.report(clip)


def evaluate(
    cfg: Config,
    *,
    log_path: str | Path | None = None,
    items_path: str | Path | None = None,
    home: str | Path | None = None,
    **kw: Any,
) -> OffPolicyReport:
    """:func:`evaluate_log` on a file (loaded into a temporary log) or, without one, on a home's log (read only)."""
    from rtrec.events import EventLog

    if log_path is None:
        if items_path is not None:
            raise InvalidInputError("--items: only with a LOG file; a home's own catalog is used")
        db = Path(home if home is not None else cfg.home) / "rtrec.duckdb"
        if not db.exists():
            raise InvalidInputError(
                f"--home: {db.parent} holds no event log", hint="pass a LOG file, or the home of a daemon that logged"
            )
        with EventLog.open(db, cfg.events, read_only=True) as log:
            return evaluate_log(log, cfg, refresh_text=False, **kw)
    path = Path(log_path)
    if not path.exists():
        raise InvalidInputError(f"LOG: {path} does not exist")
    with (
        tempfile.TemporaryDirectory(prefix="rtrec-evaluate-") as tmp,
        EventLog.open(Path(tmp) / "events.duckdb", cfg.events) as log,
    ):
        log.ingest_file(path, order_by_ts=True)
        if items_path is not None:
            log.upsert_items(items_path)
        return evaluate_log(log, cfg, **kw)
