"""One learn step over a chunk of events: read features as of each row, learn each label when it resolves.

For a chunk (at most ``learner.batch_size`` events, in sequence order):

1. the labeller plans it (:meth:`rtrec.labels.Labeler.plan`): which rows are read now, which
   slot keeps each new impression, and which examples resolve in the chunk, in stream order;
   the candidate sources take the resolved examples in stream order, the rankers training on
   sampled positives as they go (:func:`rtrec.rank.pipeline.advance`);
2. every read is hashed; an impression of a slate the daemon served takes the features the
   ranker scored instead (:class:`rtrec.learn.served.ServedCache`);
3. the linear model walks reads and resolutions in stream order: it predicts each read
   (its logit is a feature) and learns each example when its label resolves;
4. the dense features of the reads count exactly the examples resolved before them
   (:func:`rtrec.learn.featurize.resolved_before`);
5. impressions go into the store with their features and every model's prediction then;
6. the resolved examples are learned in stream order, in mini-batches, each model recording
   its prediction as of the example's read, and the counters fold them in.

So an example's features and its recorded predictions never depend on labels that resolved
after it was read, nor on where it falls among rows that resolve together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rtrec.labels import Plan, csr_gather, request_hashes
from rtrec.learn.columns import LINEAR, epoch_seconds
from rtrec.learn.featurize import Batch, Resolved
from rtrec.rank import pipeline

if TYPE_CHECKING:
    from rtrec.learn.online import LearnResult, OnlineLearner

_LOW = (1 << 32) - 1
# Examples of these event types feed the candidate sources (co-visitation, trending, popularity)
# whatever their label: a one-star rating still says the user watched the film. Other examples
# feed them only when positive. On MovieLens this took the pipeline's HR@10 without text from
# 0.100 to 0.117 and co-visitation alone from 0.080 to 0.094 (bench/RESULTS.md, Top-K).
ENGAGED_TYPES = ("rating", "purchase")


@dataclass
class Resolving:
    """Who and what the examples of a chunk are, before anything learns them (for evaluation hooks)."""

    user_idx: np.ndarray
    item_idx: np.ndarray
    ts: np.ndarray  # epoch seconds of each example's read
    labels: np.ndarray
    origin: np.ndarray  # index into rtrec.labels.ORIGINS
    engaged: np.ndarray  # bool: the candidate sources learn this example (a positive, or ENGAGED_TYPES)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Reads:
    batch: Batch  # every read of the chunk, features complete; labels/weights set for event reads
    rows: np.ndarray  # chunk row of each read


def learn_events(learner: OnlineLearner, t: pa.Table, res: LearnResult, keep: bool, stats: bool) -> None:
    """Plan, read and learn one chunk of events (the event log's columns, conformed)."""
    if learner.before_chunk is not None:
        learner.before_chunk(t)
    f = learner.featurizer
    user_col = pc.cast(t.column("user_id"), pa.string()).combine_chunks()
    item_col = pc.cast(t.column("item_id"), pa.string()).combine_chunks()
    user_idx, item_idx = f.ids(user_col, item_col)
    learner.note_consumed(user_idx, item_idx, t.column("event_type"))
    plan = learner.labeler.plan(t, user_idx, item_idx, clock_us=round(time.time() * 1e6))
    if plan.n_examples:
        r = _resolving(learner, plan, user_idx, item_idx, t)
        learner.recent_positives.add(r.user_idx, r.item_idx, r.ts, r.labels, r.engaged)
        pipeline.advance(learner, r)
    if len(plan.reads):
        learner.pause()
        reads = _read(learner, t, plan, user_col, item_col, user_idx, item_idx, stats)
        learner.pause()
        _resolve(learner, plan, reads, res, keep)
    else:
        learn_resolved(learner, plan, res, keep)


def learn_resolved(learner: OnlineLearner, plan: Plan, res: LearnResult, keep: bool) -> None:
    """Learn a plan that reads nothing (impressions expired or drained)."""
    if plan.n_examples:
        pipeline.advance(learner, _resolving(learner, plan, None, None, None))
    _linear_ops(learner, None, plan)
    _resolve(learner, plan, None, res, keep)


def _resolve(learner: OnlineLearner, plan: Plan, reads: Reads | None, res: LearnResult, keep: bool) -> None:
    if plan.n_examples:
        ex = _examples(learner, plan, reads)
        learner.learn_examples(ex, res, keep)
    learner.labeler.release(plan)


def _resolving(
    learner: OnlineLearner,
    plan: Plan,
    user_idx: np.ndarray | None,
    item_idx: np.ndarray | None,
    t: pa.Table | None,
) -> Resolving:
    store = learner.labeler.store
    n = plan.n_examples
    sl, ev = np.flatnonzero(plan.ex_slot >= 0), np.flatnonzero(plan.ex_slot < 0)
    user, item, ts = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.float64)
    engaged = plan.ex_label >= 0.5
    keys = store.key[plan.ex_slot[sl]]
    user[sl], item[sl], ts[sl] = keys >> 32, keys & _LOW, store.ts[plan.ex_slot[sl]] / 1e6
    if len(ev):
        assert user_idx is not None and item_idx is not None and t is not None
        rows = plan.ex_row[ev]
        user[ev], item[ev] = user_idx[rows], item_idx[rows]
        ts[ev] = epoch_seconds(t.column("ts").take(pa.array(rows)))
        types = pc.is_in(t.column("event_type").take(pa.array(rows)), value_set=pa.array(ENGAGED_TYPES))
        engaged[ev] |= np.asarray(types.to_numpy(zero_copy_only=False), bool)
    return Resolving(user, item, ts, plan.ex_label, plan.ex_origin, engaged)


# -- reads -------------------------------------------------------------------------------------


def _read(
    learner: OnlineLearner,
    t: pa.Table,
    plan: Plan,
    user_col: pa.Array,
    item_col: pa.Array,
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    stats: bool,
) -> Reads:
    f, store = learner.featurizer, learner.labeler.store
    r = plan.reads
    if len(r) < t.num_rows:
        take = pa.array(r)
        t, user_col, item_col = t.take(take), user_col.take(take), item_col.take(take)
    # else every row is read, in order (a chunk of ratings): no copies
    ts = epoch_seconds(t.column("ts"))
    u, i = user_idx[r], item_idx[r]
    hashed, xind, xoff = f.hash(user_col, item_col, i, ts, t.column("context"), stats=stats)
    ind, off = hashed.indices, hashed.offsets
    rid = request_hashes(t.column("request_id"))
    imp = np.flatnonzero(plan.read_slot >= 0)
    served = learner.served.take(t.column("request_id").take(pa.array(imp)).to_pylist(), i[imp]) if len(imp) else []
    hit = [k for k, s in enumerate(served) if s is not None]
    hit_rows = imp[hit]
    if len(hit_rows):
        ind, off = csr_replace(ind, off, hit_rows, [served[k].indices for k in hit])  # type: ignore[union-attr]
        xind, xoff = csr_replace(xind, xoff, hit_rows, [served[k].xindices for k in hit])  # type: ignore[union-attr]
    slots = plan.read_slot[imp]
    if len(imp):
        i_ind, i_off = csr_gather(ind, off[imp], np.diff(off)[imp])
        x_ind, x_off = csr_gather(xind, xoff[imp], np.diff(xoff)[imp])
        store.put_indices(slots, i_ind, i_off, x_ind, x_off)

    labels = np.zeros(len(r), np.float32)
    weights = np.zeros(len(r), np.float32)
    ev = np.flatnonzero(plan.ex_row >= 0)
    ev_pos = np.searchsorted(r, plan.ex_row[ev])
    labels[ev_pos], weights[ev_pos] = plan.ex_label[ev], plan.ex_weight[ev]
    read_keys = 2 * r + 1
    b = Batch(
        indices=ind,
        offsets=off,
        dense=np.zeros((len(r), len(f.dense_names)), np.float32),
        item_idx=i,
        user_idx=u,
        labels=labels,
        weights=weights,
        ts=ts,
        item_n=f.item_counts.n[i].astype(np.float32),
        user_n=f.user_counts.n[u].astype(np.float32),
        seq=t.column("seq").to_numpy().astype(np.int64),
        xindices=xind,
        xoffsets=xoff,
        request=rid,
        collision_rate=hashed.collision_rate,
    )
    logits = _linear_ops(learner, b, plan)
    if len(ev) == len(r) == plan.n_examples and np.array_equal(plan.ex_row, r):
        earlier = Resolved(u, i, labels, 2 * r + 2, xind, xoff, aligned=True)  # a chunk of ratings
    else:
        earlier = _resolved(learner, plan, b, ev, ev_pos)
    b.dense = f.dense(u, i, ts, xind, xoff, read_keys=read_keys, earlier=earlier)
    b.dense[:, LINEAR] = logits
    for k, row in zip(hit, hit_rows.tolist(), strict=True):
        s = served[k]
        assert s is not None
        b.dense[row], b.item_n[row], b.user_n[row] = s.dense, s.item_n, s.user_n
    if len(imp):
        sub = b.take(imp)
        preds = np.stack([tr.predict(sub, f) for tr in learner.trainers.values()], axis=1).astype(np.float32)
        for k in hit:
            preds[k, 0] = served[k].prob  # type: ignore[union-attr]
        store.put(slots, dense=sub.dense, preds=preds, item_n=sub.item_n, user_n=sub.user_n)
    return Reads(b, r)


def csr_replace(
    indices: np.ndarray, offsets: np.ndarray, rows: np.ndarray, new_rows: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The CSR with each row ``rows[k]`` replaced by ``new_rows[k]``."""
    starts, lengths = offsets[:-1].copy(), np.diff(offsets)
    new_len = np.array([len(x) for x in new_rows], dtype=np.int64)
    starts[rows] = len(indices) + np.concatenate([[0], np.cumsum(new_len)[:-1]])
    lengths[rows] = new_len
    arena = np.concatenate([indices, *[np.asarray(x, indices.dtype) for x in new_rows]])
    return csr_gather(arena, starts, lengths)


def _linear_ops(learner: OnlineLearner, reads: Batch | None, plan: Plan) -> np.ndarray:
    """Run the linear model over reads and resolutions in stream order; return the reads' logits.

    A read of an impression is predicted only (weight 0); a read of a labelled event is
    predicted, then learned at once; an impression's example is learned when it resolves.
    """
    sl = np.flatnonzero(plan.ex_slot >= 0)
    s_ind, s_off, _, _ = learner.labeler.store.indices(plan.ex_slot[sl])
    n_reads = 0 if reads is None else len(reads)
    if reads is None:
        ind, off = s_ind, s_off
        labels, weights, keys = plan.ex_label[sl], plan.ex_weight[sl], plan.ex_order[sl]
    else:
        n_reads = len(reads)
        ind = np.concatenate([reads.indices, s_ind])
        off = np.concatenate([reads.offsets[:-1], len(reads.indices) + s_off])
        labels = np.concatenate([reads.labels, plan.ex_label[sl]])
        weights = np.concatenate([reads.weights, plan.ex_weight[sl]])
        keys = np.concatenate([2 * plan.reads + 1, plan.ex_order[sl]])
    if len(keys) == 0:
        return np.zeros(0, np.float32)
    if not len(sl) and reads is not None:
        # Reads only (a ratings log): already in stream order.
        return learner.linear.predict_learn(reads.indices, reads.offsets, reads.labels, reads.weights)
    order = np.argsort(keys, kind="stable")
    starts, lengths = off[:-1], np.diff(off)
    op_ind, op_off = csr_gather(ind, starts[order], lengths[order])
    logits = learner.linear.predict_learn(
        op_ind,
        op_off,
        np.ascontiguousarray(labels[order], np.float32),
        np.ascontiguousarray(weights[order], np.float32),
    )
    out = np.empty(len(keys), np.float32)
    out[order] = logits
    return out[:n_reads]


def _resolved(learner: OnlineLearner, plan: Plan, reads: Batch, ev: np.ndarray, ev_pos: np.ndarray) -> Resolved:
    """The chunk's examples as :func:`resolved_before` needs them, in plan order."""
    store = learner.labeler.store
    n = plan.n_examples
    sl = np.flatnonzero(plan.ex_slot >= 0)
    user, item = np.empty(n, np.int64), np.empty(n, np.int64)
    keys = store.key[plan.ex_slot[sl]]
    user[sl], item[sl] = keys >> 32, keys & _LOW
    user[ev], item[ev] = reads.user_idx[ev_pos], reads.item_idx[ev_pos]
    _, _, s_x, s_xoff = store.indices(plan.ex_slot[sl])
    assert reads.xoffsets is not None
    starts = np.empty(n, np.int64)
    lengths = np.empty(n, np.int64)
    starts[sl], lengths[sl] = s_xoff[:-1], np.diff(s_xoff)
    starts[ev], lengths[ev] = len(s_x) + reads.xoffsets[ev_pos], np.diff(reads.xoffsets)[ev_pos]
    xind, xoff = csr_gather(np.concatenate([s_x, reads.xindices]), starts, lengths)
    return Resolved(user, item, plan.ex_label, plan.ex_order, xind, xoff)


# -- examples ------------------------------------------------------------------------------------


def _examples(learner: OnlineLearner, plan: Plan, reads: Reads | None) -> Batch:
    """The resolved examples of ``plan``, in its order, with the features of their reads."""
    store = learner.labeler.store
    n, n_models = plan.n_examples, len(learner.trainers)
    sl = np.flatnonzero(plan.ex_slot >= 0)
    ev = np.flatnonzero(plan.ex_slot < 0)
    parts: list[Batch] = []
    where: list[np.ndarray] = []
    if len(sl):
        slots = plan.ex_slot[sl]
        s = store.gather(slots)
        keys = store.key[slots]
        parts.append(
            Batch(
                indices=s.indices,
                offsets=s.offsets,
                dense=s.dense,
                item_idx=keys & _LOW,
                user_idx=keys >> 32,
                labels=plan.ex_label[sl],
                weights=plan.ex_weight[sl],
                ts=store.ts[slots] / 1e6,
                item_n=s.item_n,
                user_n=s.user_n,
                seq=store.seq[slots].copy(),
                xindices=s.xindices,
                xoffsets=s.xoffsets,
                request=store.rid[slots].copy(),
                preds=s.preds,
                origin=plan.ex_origin[sl],
            )
        )
        where.append(sl)
    if len(ev) == n and reads is not None and np.array_equal(reads.rows, plan.ex_row):
        # Every read is an example, resolved in read order (a ratings log): no copy.
        e = reads.batch
        e.preds = np.full((n, n_models), np.nan, np.float32)
        e.origin = plan.ex_origin
        return e
    if len(ev):
        assert reads is not None
        e = reads.batch.take(np.searchsorted(reads.rows, plan.ex_row[ev]))
        e.labels, e.weights = plan.ex_label[ev], plan.ex_weight[ev]
        e.preds = np.full((len(ev), n_models), np.nan, np.float32)
        e.origin = plan.ex_origin[ev]
        parts.append(e)
        where.append(ev)
    out = parts[0] if len(parts) == 1 else concat(parts)
    pos = np.concatenate(where)
    if len(parts) == 1 and np.array_equal(pos, np.arange(n)):
        return out
    inverse = np.empty(n, np.int64)
    inverse[pos] = np.arange(n)
    return out.take(inverse)


def concat(parts: list[Batch]) -> Batch:
    """Rows of several batches, in order (CSR offsets shifted)."""

    def csr(ind: list[np.ndarray], offs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        shift = np.cumsum([0] + [o[-1] for o in offs[:-1]])
        return np.concatenate(ind), np.concatenate([[0]] + [o[1:] + s for o, s in zip(offs, shift, strict=True)])

    ind, off = csr([p.indices for p in parts], [p.offsets for p in parts])
    xind, xoff = csr([p.xindices for p in parts], [p.xoffsets for p in parts])  # type: ignore[misc]

    def cat(name: str) -> Any:
        values = [getattr(p, name) for p in parts]
        return None if any(v is None for v in values) else np.concatenate(values)

    return Batch(
        indices=ind,
        offsets=off.astype(np.int64),
        dense=cat("dense"),
        item_idx=cat("item_idx"),
        user_idx=cat("user_idx"),
        labels=cat("labels"),
        weights=cat("weights"),
        ts=cat("ts"),
        item_n=cat("item_n"),
        user_n=cat("user_n"),
        seq=cat("seq"),
        xindices=xind,
        xoffsets=xoff.astype(np.int64),
        request=cat("request"),
        preds=cat("preds"),
        origin=cat("origin"),
    )
