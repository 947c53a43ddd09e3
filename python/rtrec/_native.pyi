"""Type stubs for the compiled core, ``rtrec._native`` (Rust, PyO3).

Prefer the Python wrappers: :class:`rtrec.features.Hasher` builds the buffer tuples that
``FeatureHasher.hash_buffers`` takes. Every method that does real work releases the GIL,
except serving's per-request calls (``ctr_logits``, ``FeatureHasher.hash_raw``,
``merge_rows``), which take microseconds.
Errors are :class:`rtrec.errors.InvalidInputError` (bad arguments or buffers, the message
names the field) and :class:`rtrec.errors.CorruptDataError` (a damaged or foreign blob).
"""

from typing import Any, Literal, Self, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "FORMAT_VERSION",
    "CoVisitation",
    "FeatureHasher",
    "ItemSets",
    "OnlineLinear",
    "PendingImpressions",
    "ReplayBuffer",
    "ctr_logits",
    "merge_rows",
    "murmur3_32",
    "parse_simple_events",
]

FORMAT_VERSION: int

def murmur3_32(data: str | bytes, seed: int = 0) -> int:
    """MurmurHash3 x86_32 of ``data`` (str is UTF-8 encoded) with ``seed``."""

_Strings = tuple[bytes, npt.NDArray[np.int32], npt.NDArray[np.bool_]]
_Numbers = tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]

def parse_simple_events(
    body: bytes, types: list[str], latest_us: int, oldest_us: int, max_id_chars: int, max_rows: int
) -> tuple[int, npt.NDArray[np.int64], _Strings, _Strings, _Strings, _Strings, _Numbers, _Strings, _Numbers] | None:
    """The columns of a JSON array of events, parsed with the GIL released, when every row has
    the simple shape (string ids, a numeric ``ts``, no ``context``) and is valid; else None.

    Returns ``(n, ts_us, event_id, user_id, item_id, event_type, value, request_id, propensity)``:
    strings as (UTF-8 data, ``n + 1`` int32 offsets, validity), numbers as (values, validity).
    ``ts`` is read as ``rtrec.events.validate.Validator`` reads it (epoch seconds, or
    milliseconds from 1e11) and must lie in ``[oldest_us, latest_us]``; ids are at most
    ``max_id_chars`` code points; a batch of more than ``max_rows`` rows gives None.
    """

@final
class FeatureHasher:
    """Murmur3 feature hasher with per-namespace seeds and pairwise crosses.

    ``bits`` is 1..32. A namespace ``ns`` has seed ``murmur3_32(ns, seed)``; a cross
    ``(a, b)`` has seed ``murmur3_32(f"{a}^{b}", seed)`` and hashes the 8 little-endian
    bytes of the two values' 32-bit hashes. Nulls give no feature.
    """

    def __new__(
        cls,
        namespaces: list[str],
        *,
        bits: int = 20,
        seed: int = 0,
        crosses: list[tuple[str, str]] = ...,
        signed: bool = False,
        emit: list[str] | None = None,
    ) -> Self:
        """``emit`` limits the namespaces whose own features are emitted (crosses always are)."""
    @property
    def namespaces(self) -> list[str]: ...
    @property
    def bits(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def crosses(self) -> list[tuple[str, str]]: ...
    @property
    def signed(self) -> bool: ...
    def namespace_seed(self, name: str) -> int: ...
    def hash_buffers(
        self, columns: list[tuple[Any, ...]], stats: bool = False
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32] | None, dict[str, int] | None]:
        """Hash one batch: one buffer tuple per namespace, in namespace order.

        A string column is ``("str", validity | None, offsets (int32|int64), data (uint8), offset, length)``;
        a list-of-strings column is ``("list", validity | None, list_offsets, offset, length, <child str buffers>)``.
        Returns ``(indices, offsets, signs, stats)``: CSR rows (``offsets`` has rows + 1 entries),
        ±1 signs when signed, and ``{"features", "distinct_inputs", "distinct_buckets"}`` when ``stats``.
        """

    def raw_hashes(self, name: str, column: tuple[Any, ...]) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
        """Raw 32-bit hashes (before masking) of namespace ``name``'s column (a buffer tuple as
        ``hash_buffers`` takes), per row: ``(values, offsets)``, CSR with rows + 1 offsets."""

    def hash_raw(
        self,
        parts: list[str | tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]] | None],
        idx: npt.NDArray[np.int64],
        distinct: bool = False,
        tag: int = 0,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32] | None]:
        """Hash ``len(idx)`` rows from raw hashes, keeping the GIL; one part per namespace, in order.

        A part is ``None`` (no value in any row), a ``str`` (this value in every row), or a
        ``(values, offsets)`` table from :meth:`raw_hashes`, whose row ``idx[r]`` row ``r``
        takes. Gives ``hash_buffers``'s ``(indices, offsets, signs)`` for the same values.
        ``distinct`` keeps a bucket once per row (its first place); ``tag`` (0..255, with at
        most 24 bits) is OR-ed into bits 24 and up of every index.
        """

_Strategy = Literal["uniform", "recency", "recency_events", "recency_seconds", "balanced"]

@final
class ReplayBuffer:
    """Fixed-capacity ring of hashed training rows; thread-safe; the oldest row is overwritten.

    ``sample`` draws with replacement: ``uniform``; ``recency`` (alias ``recency_events``)
    weights ``0.5**(age / half_life)`` with age in pushes; ``recency_seconds`` with age in
    seconds before the newest row; ``balanced`` draws half from label >= 0.5 and half from
    the rest. With ``seed`` a draw is reproducible and leaves the buffer's generator alone.
    """

    def __new__(cls, capacity: int, *, dense_dim: int = 0, seed: int = 0) -> Self: ...
    def push(
        self,
        indices: npt.NDArray[np.int64],
        offsets: npt.NDArray[np.int64],
        labels: npt.NDArray[np.float32],
        weights: npt.NDArray[np.float32],
        ts: npt.NDArray[np.float64],
        row_ids: npt.NDArray[np.int64] | None = None,
        dense: npt.NDArray[np.float32] | None = None,
    ) -> None:
        """Append rows (CSR ``indices``/``offsets``; ``dense`` is ``(rows, dense_dim)``). All-or-nothing."""
    def sample(
        self, n: int, strategy: _Strategy = "uniform", half_life: float | None = None, seed: int | None = None
    ) -> dict[str, npt.NDArray[Any]]:
        """Keys: indices, offsets, labels, weights, ts, row_ids (-1 = none), seqs (push order), dense."""
    def rows(self) -> dict[str, npt.NDArray[Any]]:
        """Every stored row, oldest first, in the same form as ``sample``."""
    def to_bytes(self) -> bytes:
        """Versioned, checksummed serialisation of the whole state (generator included)."""
    @staticmethod
    def from_bytes(data: bytes) -> ReplayBuffer: ...
    def __len__(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def dense_dim(self) -> int: ...
    @property
    def pushed(self) -> int: ...
    @property
    def positives(self) -> int: ...
    def forget_feature(self, feature: int) -> int:
        """Remove every row holding the feature index ``feature``; how many were removed."""

@final
class OnlineLinear:
    """Per-example online logistic regression on hashed features (Adagrad, as Vowpal Wabbit).

    ``predict_learn`` walks the rows in order: each row's logit is computed with the weights
    left by the rows before it, then the row is learned. Indices are taken modulo ``2**bits``.
    """

    def __new__(cls, bits: int, lr: float = 0.5) -> Self: ...
    def predict(self, indices: npt.NDArray[np.int64], offsets: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Logits of CSR rows, without learning."""
    def predict_learn(
        self,
        indices: npt.NDArray[np.int64],
        offsets: npt.NDArray[np.int64],
        labels: npt.NDArray[np.float32],
        weights: npt.NDArray[np.float32],
    ) -> npt.NDArray[np.float32]:
        """Pre-update logit of each row, learning the rows in order."""
    def forget(self, factor: float) -> None:
        """Scale the accumulated squared gradients by ``factor`` in (0, 1]: larger steps after drift."""
    def state(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], float, float, float]: ...
    @staticmethod
    def from_state(
        weights: npt.NDArray[np.float32], sq_sum: npt.NDArray[np.float32], bias: float, bias_sq: float, lr: float
    ) -> OnlineLinear: ...

@final
class CoVisitation:
    """Time-decayed item-to-item co-visitation with bounded memory.

    Each positive event pairs its item with the user's last ``history`` engaged items, both
    ways, with a weight that halves every ``half_life_s`` seconds of event time and shrinks
    with the distance in the history. Each item serves its ``max_neighbours`` heaviest pairs and
    keeps as many more in reserve, which :meth:`retract` hands the served places back to.
    Scores are cosine-like: ``C(a, b) / sqrt(n_a * n_b)``. Items and users are integer indices.
    """

    def __new__(cls, max_neighbours: int = 32, history: int = 20, half_life_s: float = ...) -> Self: ...
    def observe(
        self,
        users: npt.NDArray[np.int64],
        items: npt.NDArray[np.int64],
        ts: npt.NDArray[np.float64],
        weights: npt.NDArray[np.float32],
    ) -> None:
        """Fold in positive events in stream order (``ts``: epoch seconds; ``weights`` > 0)."""
    def retract(self, user: int, items: npt.NDArray[np.int64], ts: npt.NDArray[np.float64]) -> int:
        """Take back one user's positives (oldest first, weight 1): counts and pairs; pairs taken back."""
    def history(self, user: int) -> npt.NDArray[np.int64]:
        """The user's recent engaged items, oldest first."""
    def neighbours(self, item: int, k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The item's ``k`` nearest items and their scores, best first."""
    def recommend(
        self, user: int, k: int, exclude: npt.NDArray[np.int64] | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The ``k`` best neighbours of the user's history (not the history itself, nor ``exclude``)."""
    def score(self, user: int, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Each item's co-visitation score for the user (0 where none)."""
    def forget_user(self, user: int) -> bool:
        """Drop the user's history; whether there was one."""
    @property
    def items(self) -> int: ...
    @property
    def users(self) -> int: ...
    @property
    def pairs(self) -> int: ...
    @property
    def settings(self) -> tuple[int, int, float]:
        """(max_neighbours, history, half_life_s) the state was built with (a restored state keeps its own)."""
    @property
    def memory_bytes(self) -> int: ...
    def state(self) -> bytes: ...
    @staticmethod
    def from_state(data: bytes) -> CoVisitation: ...

@final
class ItemSets:
    """The items each user touched (users and items are integer indices), one compact vector
    per user: 4 bytes per (user, item) pair. With ``max_per_user`` > 0 a user keeps that many
    items: touching an item again makes it the newest, and a new item past the bound forgets
    the least recently touched one. 0 keeps every item, in order of first touch."""

    def __new__(cls, max_per_user: int = 0) -> Self: ...
    def add(self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]) -> None:
        """Add the pairs ``(users[k], items[k])`` in order (a negative index changes nothing and raises)."""
    def get(self, user: int) -> npt.NDArray[np.int64]:
        """A copy of the user's items, least recently touched first (empty for an unknown user)."""
    def remove(self, user: int) -> int:
        """Drop the user's items; how many there were."""
    @property
    def max_per_user(self) -> int: ...
    @property
    def users(self) -> int:
        """Users with at least one item."""
    @property
    def pairs(self) -> int: ...
    @property
    def evicted(self) -> int:
        """Pairs forgotten to keep users within the bound."""
    @property
    def memory_bytes(self) -> int: ...
    def to_flat(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Users with items (ascending), their set sizes, and every member in each set's order."""
    @staticmethod
    def from_flat(
        keys: npt.NDArray[np.int64],
        sizes: npt.NDArray[np.int64],
        members: npt.NDArray[np.int64],
        max_per_user: int = 0,
    ) -> ItemSets:
        """The inverse of :meth:`to_flat`; a set longer than the bound keeps its last items."""

_Resolved = tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
    npt.NDArray[np.int8],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
]

@final
class PendingImpressions:
    """The labeller's waiting room: impressions waiting for their label and labelled ones kept
    for late feedback, as key indexes and deadline queues over a store's slots.

    ``store`` is ``(key, rid, seq, deadline, state, next)``: the slot columns of
    :class:`rtrec.labels.store.SnapshotStore` (``state`` and ``next`` are written). Results
    are ``(slot, label, weight, origin, order, event_rows, freed)``: examples of stored
    impressions in the order found, chunk rows that are examples of their own, and slots
    to free once the examples are learned.
    """

    def __new__(cls, retention_us: int, cap: int) -> Self: ...
    def in_play(self, keys: npt.NDArray[np.int64], is_impression: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """Per row: is its key waiting or kept, or the key of an impression of the same chunk?"""
    def plan(
        self,
        store: tuple[npt.NDArray[Any], ...],
        cand: npt.NDArray[np.int64],
        slot: npt.NDArray[np.int64],
        key: npt.NDArray[np.int64],
        rid: npt.NDArray[np.int64],
        label: npt.NDArray[np.float32],
        weight: npt.NDArray[np.float32],
        watermark: npt.NDArray[np.int64],
    ) -> _Resolved:
        """Label a chunk's candidate rows in order (``slot``: each new impression's slot, else -1),
        then expire what the last ``watermark`` passed."""
    def expire(self, store: tuple[npt.NDArray[Any], ...], limit: int | None, horizon: int | None) -> _Resolved:
        """Pending impressions with a deadline before ``limit`` (all when None) as negatives; then
        free kept snapshots past ``horizon`` minus the retention."""
    def rebuild(
        self, store: tuple[npt.NDArray[Any], ...], pending: npt.NDArray[np.int64], kept: npt.NDArray[np.int64]
    ) -> None:
        """Rebuild the indexes and queues from the slots of pending and kept impressions."""
    @property
    def n_pending(self) -> int: ...
    @property
    def n_retained(self) -> int: ...
    @property
    def is_empty(self) -> bool: ...
    @property
    def memory_bytes(self) -> int: ...
    @property
    def expired_early(self) -> int: ...
    @expired_early.setter
    def expired_early(self, value: int) -> None: ...
    @property
    def dropped(self) -> int: ...
    @dropped.setter
    def dropped(self, value: int) -> None: ...

def merge_rows(
    blocks: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Concatenate CSR ``(indices, offsets)`` blocks with the same rows, row by row in block
    order, keeping the GIL."""

def ctr_logits(
    table: npt.NDArray[np.float32],
    norm2: npt.NDArray[np.float32],
    indices: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64],
    dense: npt.NDArray[np.float32],
    layers: list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]],
    bias: float,
    dense_lin: npt.NDArray[np.float32] | None = None,
    text: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None,
    item_text: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """The CTR model's logits for CSR rows (``rtrec.models.CTRModel.forward`` without gradients),
    computed holding the GIL: ``table`` (rows x (1 + dim): first-order weight, factor), ``norm2``
    (each row's squared factor norm), ``layers`` (the MLP's linear layers as (weight, bias), a
    ReLU between them), ``text`` (the item-text projection, with ``item_text`` one row per CSR row)."""
