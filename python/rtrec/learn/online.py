"""The online learner: labels events, featurizes them as of when they are shown, updates every model.

The daemon and ``rtrec replay`` both drive this class. Events arrive in sequence order
(from :meth:`rtrec.events.EventLog.tail`) and are learned in chunks of
``learner.batch_size`` (:mod:`rtrec.learn.step`): an impression's features and every
model's prediction are taken when it is shown and kept until its label resolves; each
example is learned with them (progressive validation), then folded into the per-user and
per-item state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from rtrec import _native
from rtrec.clean import Cleaner
from rtrec.config import Config
from rtrec.contracts import DriftAlarm, LearnerStats
from rtrec.errors import CorruptDataError, InvalidInputError
from rtrec.events.validate import Validator
from rtrec.labels import FOLLOWUP, LATE, Labeler, conform, csr_gather
from rtrec.learn import forget, intake, probation, stats, step
from rtrec.learn.checkpoint import MAGIC, VERSION, Shadows, read_checkpoint, write_checkpoint
from rtrec.learn.columns import LINEAR
from rtrec.learn.featurize import Batch, Featurizer
from rtrec.learn.metrics import ProgressiveMemo, logloss
from rtrec.learn.served import ServedBlock, ServedCache
from rtrec.learn.trainer import Trainer, Variant, default_variant
from rtrec.rank import pipeline
from rtrec.rank.model import ListRanker
from rtrec.retrieve.sources import Retrieval
from rtrec.sets import add_pairs, load_item_sets

log = logging.getLogger("rtrec.learn")

# Feedback after which an item is not recommended to that user again (by default).
CONSUMED_TYPES = ("rating", "purchase", "dismiss")
MAIN = "rtrec"


@dataclass
class LearnResult:
    """What one call to :meth:`OnlineLearner.learn` did."""

    events: int = 0
    examples: int = 0
    positives: int = 0
    logloss: float | None = None
    last_seq: int = 0
    seconds: float = 0.0
    loss_sum: float = 0.0
    quarantined: list[tuple[int, str]] = field(default_factory=list)  # (seq, reason): set aside, not learned
    flagged: list[tuple[int, str]] = field(default_factory=list)  # (seq, reason): learned, but flagged by cleaning
    predictions: dict[str, list[np.ndarray]] = field(default_factory=dict)


class OnlineLearner:
    """Labels, featurizes and learns a stream of events; scores items for users.

    ``variants`` are the trainers that learn side by side on the same examples; the first
    is the one that serves. Thread-safe: ``learn`` and ``score`` may run concurrently.
    """

    def __init__(self, cfg: Config, *, text_dim: int = 0, variants: Sequence[Variant] | None = None) -> None:
        self.cfg = cfg
        if cfg.learner.threads > 0:
            torch.set_num_threads(cfg.learner.threads)
        self.text_dim = text_dim if cfg.text.enabled else 0
        self.featurizer = Featurizer(cfg)
        # The linear model: per-example online logistic regression on the hashed features (as
        # Vowpal Wabbit learns), beside the CTR model. Its logit as each row is read is a CTR
        # feature, so per-event adaptation reaches the mini-batch model at once.
        self.linear = _native.OnlineLinear(min(cfg.features.bits, 30), cfg.learner.linear_lr)
        vs = list(variants) if variants else [default_variant(cfg)]
        self.trainers: dict[str, Trainer] = {v.name: Trainer(v, cfg, self.text_dim) for v in vs}
        self.main = next(iter(self.trainers))
        # Candidate sources and the ranker over them (rtrec.retrieve, rtrec.rank). The served
        # variant ranks with its own ranker; in replay, so does each of its text ablations.
        self.retrieval = Retrieval(
            cfg.retrieve,
            self.featurizer,
            cold_below=cfg.replay.cold_threshold,
            seed=cfg.learner.seed,
            items_per_user=cfg.learner.items_per_user,
        )
        self.rankers = {
            v.name: ListRanker(cfg.retrieve.lr, text=v.item_text, user_vector=v.user_vector)
            for v in vs
            if v.name == self.main or v.name.startswith(f"{MAIN}_")
        }
        self.rank_rng = np.random.default_rng(cfg.learner.seed + 1)
        self.rank_recall = [0, 0]  # trained positives the candidates held, trained positives tried
        self.live_ranks: deque[int] = deque(maxlen=2000)  # served rank of recent positives (pipeline.MISSED)
        self.labeler = Labeler(cfg.labels, dense_dim=len(self.featurizer.dense_names), n_preds=len(self.trainers))
        self.served = ServedCache()
        self.validator = Validator(cfg.events)
        self.cleaner = Cleaner(cfg.clean)  # bots, repeats, floods and outliers: set aside before labelling
        self.recent_positives = probation.RecentPositives()  # what a bot's verdict takes back
        self.quarantined = 0
        # user index -> item indices the user consumed (CONSUMED_TYPES): never recommended again.
        self.consumed = _native.ItemSets(cfg.learner.items_per_user)
        self.last_seq = 0
        self.model_version = 0
        self.events_seen = 0
        self.examples_seen = 0
        # Hooks for evaluation: ``evaluator`` picks examples of each chunk before any state
        # (the linear model included) learns from it, and ranks each as it would be served
        # (rtrec.rank.pipeline.advance); ``on_chunk`` sees each mini-batch of examples, with
        # its recorded predictions, once the models learned it.
        self.evaluator: pipeline.Evaluator | None = None
        # Called between the phases of a learn step: the daemon lets requests in flight run
        # there, so that one step's Python does not hold the interpreter from them throughout.
        self.yield_point: Callable[[], None] | None = None
        self.on_chunk: Callable[[Batch], None] | None = None
        self.before_chunk: Callable[[pa.Table], None] | None = None  # a step's events, before it learns any (OPE)
        self.history: deque[dict[str, Any]] = deque(maxlen=4096)
        self.progress = ProgressiveMemo()  # the history's quality, shared by readers for a second
        self._stats_at = 0.0
        self._lock = threading.RLock()
        self._shadows = Shadows()  # what snapshots copy the model into

    # -- inputs ----------------------------------------------------------------------------------
    def set_catalog(self, items: pa.Table) -> None:
        with self._lock:
            self.featurizer.set_catalog(items)

    def set_item_embeddings(self, ids: Sequence[str], matrix: np.ndarray) -> None:
        with self._lock:
            if self.text_dim == 0:
                return
            if matrix.shape[1] != self.text_dim:
                width = matrix.shape[1]
                raise InvalidInputError(
                    f"item embeddings: width {width} does not match the model's text dimension {self.text_dim}",
                    hint="the text model changed since this checkpoint; start from a fresh home or the old model",
                )
            self.featurizer.set_item_embeddings(list(ids), matrix)
        self.retrieval.reindex()  # outside the lock: seconds on a large catalog, and reads go on meanwhile

    # -- learning -------------------------------------------------------------------------------------
    def learn(
        self, events: pa.RecordBatch | pa.Table, *, keep_predictions: bool = False, chunk: int | None = None
    ) -> LearnResult:
        """Learn a batch of events in sequence order (the event log's columns), ``chunk`` events
        per learn step (``learner.batch_size`` by default; examples are learned in mini-batches
        of that size either way). A step costs tens of milliseconds whatever its size, so larger
        steps learn a backlog faster; reads within a step see the models as they were at its start."""
        t0 = time.perf_counter()
        table = events if isinstance(events, pa.Table) else pa.Table.from_batches([events])
        with self._lock:
            if table.num_rows:
                seqs = table.column("seq").to_numpy()
                fresh = seqs > self.last_seq
                if not fresh.all():
                    # Exactly once: events at or before the checkpointed sequence were learned already.
                    table = table.filter(pa.array(fresh))
            res = LearnResult(events=table.num_rows)
            if table.num_rows:
                admitted = intake.admit(self.validator, self.cleaner, conform(table))
                t, res.quarantined, res.flagged = admitted.table, admitted.quarantined, admitted.flagged
                self.quarantined += len(res.quarantined)
                bs = chunk or self.cfg.learner.batch_size
                for start in range(0, t.num_rows, bs):
                    step.learn_events(self, t.slice(start, bs), res, keep_predictions, self._collision_stats())
                if admitted.new_bots:  # what they did before the verdict (this chunk's too) is taken back
                    probation.retract_bots(self, admitted.new_bots)
                self.last_seq = int(table.column("seq").to_numpy().max())
                self.events_seen += table.num_rows
            res.last_seq = self.last_seq
        res.seconds = time.perf_counter() - t0
        return res

    def skip(self, seqs: np.ndarray) -> int:
        """Move past events that could not be learned (the caller records them as quarantined); how many."""
        with self._lock:
            fresh = np.asarray(seqs, np.int64)
            fresh = fresh[fresh > self.last_seq]
            if len(fresh):
                self.last_seq = int(fresh.max())
                self.events_seen += len(fresh)
                self.quarantined += len(fresh)
            return len(fresh)

    def forget_user(self, user_id: str, learned_events: int = 0) -> forget.Forgotten:
        """Erase one user from every per-user state (:func:`rtrec.learn.forget.forget_user`)."""
        with self._lock:
            return forget.forget_user(self, user_id, learned_events)

    def expire(self, now: float | None = None) -> LearnResult:
        """Learn impressions whose window has passed as negatives (``now``: epoch seconds)."""
        with self._lock:
            res = LearnResult(last_seq=self.last_seq)
            step.learn_resolved(self, self.labeler.expire(now), res, False)
            return res

    def drain(self, *, keep_predictions: bool = False) -> LearnResult:
        """Learn every pending impression as a negative (the end of a finite stream)."""
        with self._lock:
            res = LearnResult(last_seq=self.last_seq)
            step.learn_resolved(self, self.labeler.drain(), res, keep_predictions)
            return res

    def _collision_stats(self) -> bool:
        # Collision statistics (for the dashboard) cost a second hash pass: once a second is enough.
        now = time.time()
        if now - self._stats_at >= 1.0:
            self._stats_at = now
            return True
        return False

    def pause(self) -> None:
        if self.yield_point is not None:
            self.yield_point()

    def learn_examples(self, ex: Batch, res: LearnResult, keep: bool) -> None:
        """Learn resolved examples in mini-batches; each model's progressive prediction is the one
        recorded when the example was read, or (for rows read and resolved at once) made just before."""
        n = len(ex)
        bs = self.cfg.learner.batch_size
        losses: list[float] = []
        now = time.time()
        names = list(self.trainers)
        for start in range(0, n, bs):
            b = ex if n <= bs else ex.take(np.arange(start, min(start + bs, n)))
            preds = b.preds if b.preds is not None else np.full((len(b), len(names)), np.nan, np.float32)
            for j, name in enumerate(names):
                tr = self.trainers[name]
                alarms = len(tr.alarms)
                probs = tr.predict_learn(b, self.featurizer, now, recorded=preds[:, j])
                preds[:, j] = probs
                if name == self.main:
                    ll = logloss(b.labels, probs)
                    if ll is not None:
                        losses.append(ll * len(b))
                    self._record(b, probs, now)
                if keep:
                    res.predictions.setdefault(name, []).append(np.asarray(probs, np.float64))
                if name == self.main and len(tr.alarms) > alarms:
                    self.linear.forget(self.cfg.learner.drift_forget)
            b.preds = preds
            if self.on_chunk is not None:
                self.on_chunk(b)
            self.featurizer.update(b)
            self.model_version += 1
            res.positives += int((b.labels >= 0.5).sum())
        res.examples += n
        if losses:
            res.loss_sum += sum(losses)
            res.logloss = res.loss_sum / res.examples
        self.examples_seen += n

    def _record(self, b: Batch, probs: np.ndarray, now: float) -> None:
        # Live metrics count each showing once, with the label it resolved to first: a late
        # correction or a follow-up is learned, but would count its impression twice.
        keep = slice(None) if b.origin is None else (b.origin != LATE) & (b.origin != FOLLOWUP)
        self.history.append(
            {
                "wall": now,
                "ts": float(b.ts.max()),
                "labels": b.labels[keep].copy(),
                "probs": probs[keep].astype(np.float32),
            }
        )

    # -- scoring ----------------------------------------------------------------------------------------
    def score(
        self,
        user_id: str,
        item_ids: Sequence[str] | None = None,
        context: dict[str, Any] | None = None,
        *,
        now: float | None = None,
        variant: str | None = None,
    ) -> tuple[list[str], np.ndarray]:
        """Probabilities that ``user_id`` clicks each item (all known items when ``item_ids`` is None).

        Returns the item ids actually scored (unknown ids are scored as new items) and the scores.
        """
        ids, scores, _ = self.score_batch(user_id, item_ids, context, now=now, variant=variant)
        return ids, scores

    def score_batch(
        self,
        user_id: str,
        item_ids: Sequence[str] | None = None,
        context: dict[str, Any] | None = None,
        *,
        now: float | None = None,
        variant: str | None = None,
    ) -> tuple[list[str], np.ndarray, Batch | None]:
        """:meth:`score`, plus the features scored (for :meth:`remember_served`).

        Scoring does not wait for a learn step: it reads the model while it learns, as
        Hogwild-style serving does, so a score may mix weights from before and after the
        update in progress. Arrays only ever grow (a reader holds a consistent prefix), and
        nothing read here is written by it.
        """
        f = self.featurizer
        if item_ids is None:
            ids = list(f.items.ids)
            idx = np.arange(len(ids), dtype=np.int64)
        else:
            # Unknown ids are scored as new items on a scratch row: a read never registers one.
            ids = [str(i) for i in item_ids]
            known = [f.items.get(i) for i in ids]
            scratch = -1
            if any(k is None for k in known):
                with self._lock:  # the scratch row may grow the arrays: not while the learner grows them
                    scratch = f.scratch_item()
            idx = np.array([scratch if k is None else k for k in known], dtype=np.int64)
        if len(idx) == 0:
            return ids, np.zeros(0), None
        ts = now if now is not None else self._clock()
        b = self.candidates(str(user_id), idx, ts, context, item_ids=None if item_ids is None else ids)
        return ids, self.trainers[variant or self.main].predict(b, f), b

    def candidates(
        self,
        user_id: str,
        item_idx: np.ndarray,
        ts: float,
        context: dict[str, Any] | None = None,
        *,
        item_ids: list[str] | None = None,
    ) -> Batch:
        """Rows pairing one user with many items, with every feature the models read (no state changes)."""
        b = self.featurizer.candidates(user_id, item_idx, ts, context, item_ids=item_ids)
        b.dense[:, LINEAR] = self.linear.predict(b.indices, b.offsets)
        return b

    def remember_served(self, request_id: str, batch: Batch, rows: Sequence[int], probs: Sequence[float]) -> None:
        """Keep the features of the served ``rows`` of ``batch`` until their impressions are logged."""
        r, p = np.asarray(rows, np.int64), np.asarray(probs, np.float64)
        # An item scored on the scratch row (not in the catalog) is read again when its impression comes.
        known = batch.item_idx[r] < len(self.featurizer.items)
        r, p = r[known], p[known]
        if not len(r):
            return
        assert batch.xoffsets is not None
        ind, off = csr_gather(batch.indices, batch.offsets[r], np.diff(batch.offsets)[r])
        xind, xoff = csr_gather(batch.xindices, batch.xoffsets[r], np.diff(batch.xoffsets)[r])
        served = ServedBlock(
            batch.item_idx[r], ind, off, xind, xoff, batch.dense[r], p, batch.item_n[r], batch.user_n[r]
        )
        self.served.put(request_id, served)

    def clock(self) -> float:
        """Now, for scoring: the wall clock, or the newest learned event time when that is later."""
        return self._clock()

    def _clock(self) -> float:
        last = self.history[-1]["ts"] if self.history else None
        return max(time.time(), last) if last is not None else time.time()

    def note_consumed(self, user_idx: np.ndarray, item_idx: np.ndarray, event_type: pa.ChunkedArray) -> None:
        """Record the (user, item) pairs of consuming events (a chunk being learned)."""
        mask = pc.is_in(event_type, value_set=pa.array(CONSUMED_TYPES)).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(np.asarray(mask, bool))
        add_pairs(self.consumed, user_idx[rows], item_idx[rows])

    def user_state(self, user_id: str) -> tuple[bool, set[str]]:
        """Whether the learner has seen ``user_id``, and the ids of the items the user consumed.

        A read on the recommend path: it does not wait for a learn step in progress (the
        user's set is copied whole, in one step the interpreter does not interleave)."""
        u = self.featurizer.users.get(str(user_id))
        if u is None:
            return False, set()
        ids = self.featurizer.items.ids
        return True, {ids[i] for i in self.consumed.get(u).tolist()}

    def seen_items(self, user_id: str) -> set[str]:
        with self._lock:
            u = self.featurizer.users.get(str(user_id))
            if u is None:
                return set()
            ids = self.featurizer.items.ids
            return {ids[i] for i in self.featurizer.user_items.get(u).tolist()}

    def popular(self, k: int, exclude: Sequence[str] = ()) -> list[str]:
        """The ``k`` items with the most recency-decayed positive feedback (a read: no lock, as :meth:`score`)."""
        f = self.featurizer
        n = min(len(f.items), len(f.item_counts.n))  # the arrays grow after the ids: read what both hold
        if n == 0:
            return []
        idx = np.arange(n)
        scores = f.item_counts.positives(idx, np.full(n, self._clock()))
        order = np.argsort(-scores, kind="stable")
        skip = set(exclude)
        return [f.items.ids[i] for i in order.tolist() if f.items.ids[i] not in skip][:k]

    @property
    def drift_alarms(self) -> list[DriftAlarm]:
        return list(self.trainers[self.main].alarms)

    def stats(self, window_s: float = 3600.0) -> LearnerStats:
        """Replay and state sizes, read under the lock, and progressive metrics (overall and per
        minute over ``window_s``), computed outside it from a copy of the history."""
        with self._lock:
            state, history = stats.learner(self), list(self.history)
        return cast(LearnerStats, {**state, "progressive": self.progress(history, time.time(), window_s)})

    # -- checkpoints ----------------------------------------------------------------------------------
    def state_dict(self, *, labeler: bool = True) -> dict[str, Any]:
        """The whole state (``labeler=False``: without the labeller's, which :meth:`snapshot` takes its own way)."""
        with self._lock:
            return {
                "magic": MAGIC,
                "version": VERSION,
                "features": self.cfg.features,
                "text_dim": self.text_dim,
                "last_seq": self.last_seq,
                "model_version": self.model_version,
                "events_seen": self.events_seen,
                "examples_seen": self.examples_seen,
                "labeler": self.labeler.state_dict() if labeler else None,
                "featurizer": self.featurizer.state_dict(),
                "linear": self.linear.state(),
                "consumed": self.consumed.to_flat(),
                "cleaner": self.cleaner.state_dict(),
                "retrieval": self.retrieval.state_dict(),
                "rankers": {k: r.state_dict() for k, r in self.rankers.items()},
                "rank_recall": list(self.rank_recall),
                "trainers": {k: t.state_dict() for k, t in self.trainers.items()},
                "history": list(self.history),
            }

    def snapshot(self) -> dict[str, Any]:
        """A copy of the whole state that later learning cannot change: write it with :meth:`save`
        while learning goes on (only the copy holds the lock). The held impressions are shared,
        the model copied into standing buffers (:class:`Shadows`); both are kept from reuse,
        under ``hold``, until it is dropped (:meth:`SnapshotStore.raw`)."""
        with self._lock:
            state, hold = self._shadows.copy(self.state_dict(labeler=False))
            return state | {"labeler": self.labeler.snapshot(), "hold": hold}

    def save(self, path: str | Path, state: dict[str, Any] | None = None) -> Path:
        """Write a checkpoint (of ``state`` from :meth:`snapshot`, or of now) atomically; return the path."""
        if state is not None:  # the hold is not written
            state = {k: v for k, v in state.items() if k != "hold"} | {"labeler": Labeler.finish(state["labeler"])}
        return write_checkpoint(self.state_dict() if state is None else state, path)

    @classmethod
    def load(cls, path: str | Path, cfg: Config) -> OnlineLearner:
        """Restore a checkpoint written by :meth:`save`."""
        path = Path(path)
        state = read_checkpoint(path)
        try:
            return cls._restore(path, state, cfg)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            # A file with our magic and version but missing or mistyped fields: damaged, not foreign.
            raise CorruptDataError(f"checkpoint {path} is damaged: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def _restore(cls, path: Path, state: dict[str, Any], cfg: Config) -> OnlineLearner:
        if state["features"] != cfg.features:
            raise InvalidInputError(
                f"checkpoint {path} was trained with different [features] settings",
                hint="hashed features must match the checkpoint: use its config or start from a fresh home",
            )
        variants = [t["variant"] for t in state["trainers"].values()]
        self = cls(cfg, text_dim=state["text_dim"], variants=variants)
        self.text_dim = state["text_dim"]
        self.last_seq = state["last_seq"]
        self.model_version = state["model_version"]
        self.events_seen = state["events_seen"]
        self.examples_seen = state["examples_seen"]
        self.labeler.load_state_dict(state["labeler"])
        self.featurizer.load_state_dict(state["featurizer"])
        self.linear = _native.OnlineLinear.from_state(*state["linear" if "linear" in state else "wide"])  # "wide": 0.1
        self.consumed = load_item_sets(state["consumed"], cfg.learner.items_per_user)
        if "cleaner" in state:  # checkpoints from before cleaning start it afresh
            self.cleaner.load_state_dict(state["cleaner"])
        for k, t in state["trainers"].items():
            self.trainers[k].load_state_dict(t)
        if "retrieval" in state:  # checkpoints from before retrieval rebuild it as events come
            want = self.retrieval.covisit.settings  # the config's, until the state replaces it
            self.retrieval.load_state_dict(state["retrieval"])
            if (kept := self.retrieval.covisit.settings) != want:  # its pairs were weighed and cut with these
                msg = "co-visitation keeps the settings it was built with %s (max_neighbours, history, half-life s)"
                log.warning(msg + ", not the config's; start from a fresh home to apply them", kept)
            for k, r in state["rankers"].items():
                if k in self.rankers:
                    self.rankers[k].load_state_dict(r)
            self.rank_recall = list(state["rank_recall"])
        self.history.extend(state["history"])
        return self
