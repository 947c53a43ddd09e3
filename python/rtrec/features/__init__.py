"""Hashed features: a thin wrapper over the native feature hasher.

Columns go to Rust as Arrow buffers viewed through numpy, without a Python object per
row, and the hashing runs with the GIL released. The algorithm and seeds are documented
in ``rust/src/hash.rs`` and in :class:`Hasher`; checkpoints depend on them.

>>> h = Hasher(["user", "item"], bits=18)
>>> out = h.hash({"user": ["u1", "u2"], "item": ["i1", None]})
>>> out.offsets.tolist()
[0, 2, 3]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rtrec import _native
from rtrec.errors import InvalidInputError

__all__ = ["Hashed", "Hasher", "column_buffers"]

_EMPTY = np.empty(0, dtype=np.uint8)


@dataclass(frozen=True)
class Hashed:
    """Hashed rows in CSR form: row ``r`` owns ``indices[offsets[r]:offsets[r + 1]]``.

    This is what ``torch.nn.EmbeddingBag(..., include_last_offset=True)`` takes. ``signs``
    (±1, float32) is set when the hasher is signed; ``stats`` when asked for.
    """

    indices: np.ndarray
    offsets: np.ndarray
    signs: np.ndarray | None = None
    stats: dict[str, int] | None = None

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    @property
    def collision_rate(self) -> float | None:
        """Share of distinct inputs that share a bucket with another input, in this batch."""
        if not self.stats or not self.stats["distinct_inputs"]:
            return None
        return 1.0 - self.stats["distinct_buckets"] / self.stats["distinct_inputs"]


def _bytes(buf: pa.Buffer | None) -> np.ndarray | None:
    return None if buf is None else np.frombuffer(buf, dtype=np.uint8)


def _string_buffers(arr: pa.Array) -> tuple[Any, ...]:
    validity, offsets, data = arr.buffers()[:3]
    off_dtype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    off = np.frombuffer(offsets, dtype=off_dtype) if offsets is not None else np.zeros(1, dtype=off_dtype)
    return (_bytes(validity), off, _bytes(data) if data is not None else _EMPTY, arr.offset, len(arr))


def _as_strings(arr: pa.Array, name: str) -> pa.Array:
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr
    if pa.types.is_dictionary(t):
        return _as_strings(arr.dictionary_decode(), name)
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.string())
    try:
        return pc.cast(arr, pa.large_string() if pa.types.is_string_view(t) else pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(f"feature column {name!r}: cannot turn type {t} into strings ({exc})") from exc


def column_buffers(values: Any, name: str = "column") -> tuple[Any, ...]:
    """The buffer tuple the native hasher takes for one column.

    ``values`` is a pyarrow array (strings, anything castable to strings, or a list of
    those) or a Python sequence of ``str | None`` or ``list[str] | None``.
    """
    arr: pa.Array
    if isinstance(values, pa.ChunkedArray):
        arr = values.combine_chunks()
    elif isinstance(values, pa.Array):
        arr = values
    elif isinstance(values, np.ndarray):
        arr = pa.array(values.astype(str) if values.dtype.kind not in "OUS" else values)
    else:
        try:
            arr = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInputError(f"feature column {name!r}: {exc}") from exc
    t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        if not (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)):
            target = pa.list_(pa.string()) if pa.types.is_list(t) else pa.large_list(pa.string())
            try:
                arr = pc.cast(arr, target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InvalidInputError(f"feature column {name!r}: cannot turn {t} into lists of strings") from exc
        validity, offsets = arr.buffers()[:2]
        off = np.frombuffer(offsets, dtype=np.int64 if pa.types.is_large_list(arr.type) else np.int32)
        return ("list", _bytes(validity), off, arr.offset, len(arr), *_string_buffers(arr.values))
    return ("str", *_string_buffers(_as_strings(arr, name)))


class Hasher:
    """Hashes named columns into feature indices in ``[0, 2**bits)``.

    * MurmurHash3 x86_32 (as Vowpal Wabbit); namespace ``ns`` hashes with seed
      ``murmur3_32(ns, seed)``; nulls give no feature.
    * A cross ``(a, b)`` hashes every pair of values of ``a`` and ``b`` in a row.
    * Multi-valued columns (Arrow lists) give one feature per element.
    """

    def __init__(
        self,
        namespaces: Sequence[str],
        *,
        bits: int = 20,
        seed: int = 0,
        crosses: Sequence[tuple[str, str]] = (),
        signed: bool = False,
        emit: Sequence[str] | None = None,
    ) -> None:
        self._native = _native.FeatureHasher(
            list(namespaces),
            bits=bits,
            seed=seed,
            crosses=[(a, b) for a, b in crosses],
            signed=signed,
            emit=list(emit) if emit is not None else None,
        )

    @classmethod
    def from_config(cls, cfg: Any, *, signed: bool = False) -> Hasher:
        """Build from a :class:`rtrec.config.FeaturesConfig`."""
        return cls(cfg.namespaces, bits=cfg.bits, seed=cfg.seed, crosses=cfg.crosses, signed=signed)

    @property
    def namespaces(self) -> list[str]:
        return list(self._native.namespaces)

    @property
    def bits(self) -> int:
        return int(self._native.bits)

    @property
    def crosses(self) -> list[tuple[str, str]]:
        return list(self._native.crosses)

    @property
    def dim(self) -> int:
        return 1 << self.bits

    def hash(self, columns: Mapping[str, Any] | pa.Table | pa.RecordBatch, *, stats: bool = False) -> Hashed:
        """Hash one batch. ``columns`` maps every namespace to a column of equal length.

        A namespace missing from ``columns`` is an error; extra columns are ignored.
        """
        names = self.namespaces
        present = set(columns.schema.names) if isinstance(columns, pa.Table | pa.RecordBatch) else set(columns)
        self._require("column", present)
        bufs = [column_buffers(columns[n], n) for n in names]
        indices, offsets, signs, st = self._native.hash_buffers(bufs, stats)
        return Hashed(indices=indices, offsets=offsets, signs=signs, stats=st)

    def _require(self, what: str, present: Collection[str]) -> None:
        """An error naming the first namespace missing from ``present``."""
        missing = [n for n in self.namespaces if n not in present]
        if missing:
            names = ", ".join(self.namespaces)
            raise InvalidInputError(f"feature {what} {missing[0]!r} is missing (namespaces: {names})")

    def raw_hashes(self, name: str, values: Any) -> tuple[np.ndarray, np.ndarray]:
        """Raw 32-bit hashes of namespace ``name``'s values, per row (CSR ``(values, offsets)``):
        kept per item, they let :meth:`hash_raw` hash a request's rows without Arrow."""
        return self._native.raw_hashes(name, column_buffers(values, name))

    def hash_raw(self, parts: Mapping[str, Any], idx: np.ndarray, *, distinct: bool = False, tag: int = 0) -> Hashed:
        """Hash ``len(idx)`` rows from raw hashes, holding the interpreter (a request's rows).

        ``parts`` maps every namespace to ``None`` (no value), a ``str`` (the value of every
        row) or a table from :meth:`raw_hashes` (row ``r`` takes its row ``idx[r]``). The same
        features as :meth:`hash` of the values. ``distinct`` keeps a bucket once per row;
        ``tag`` is OR-ed into bits 24 and up of each index.
        """
        self._require("part", parts)
        indices, offsets, signs = self._native.hash_raw(
            [parts[n] for n in self.namespaces], np.ascontiguousarray(idx, np.int64), distinct, tag
        )
        return Hashed(indices=indices, offsets=offsets, signs=signs, stats=None)

    def __repr__(self) -> str:
        return repr(self._native)
