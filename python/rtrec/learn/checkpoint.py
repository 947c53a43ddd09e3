"""Checkpoint files of the learner: written atomically, read with a check that they are ours and whole."""

from __future__ import annotations

import os
import pickle
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtrec.errors import CorruptDataError

__all__ = ["MAGIC", "VERSION", "ArrayRecord", "Shadows", "copy_state", "read_checkpoint", "write_checkpoint"]

MAGIC = "rtrec-checkpoint"
VERSION = 3  # 3: large arrays as ArrayRecord
READABLE = (2, 3)


# Numpy arrays of at least this many bytes are written as tensor records: torch.save writes a
# tensor's bytes straight from memory, where a pickled numpy array is first copied whole into
# the pickle stream (a second copy of the pending impressions' features at every checkpoint).
OUT_OF_BAND_BYTES = 1 << 20
# Numpy dtypes a tensor can share memory with; the unsigned wide ones go as their signed twins.
_SHARED = {np.dtype(t) for t in (np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_, np.float64, np.float32)}
_TWIN = {np.dtype(np.uint64): np.dtype(np.int64), np.dtype(np.uint32): np.dtype(np.int32)}


class ArrayRecord:
    """A numpy array as written in a checkpoint: its bytes as a tensor, and its numpy dtype."""

    __slots__ = ("dtype", "tensor")

    def __init__(self, tensor: torch.Tensor, dtype: str) -> None:
        self.tensor, self.dtype = tensor, dtype

    def array(self) -> np.ndarray:
        return self.tensor.numpy().view(np.dtype(self.dtype))


def _records(x: Any) -> Any:
    """``x`` with its large numpy arrays as :class:`ArrayRecord` (sharing their memory)."""
    if isinstance(x, np.ndarray):
        as_dtype = _TWIN.get(x.dtype, x.dtype)
        if x.nbytes < OUT_OF_BAND_BYTES or as_dtype not in _SHARED:
            return x
        return ArrayRecord(torch.from_numpy(np.ascontiguousarray(x).view(as_dtype)), x.dtype.str)
    return _rebuild(x, _records)


def _arrays(x: Any) -> Any:
    """``x`` with every :class:`ArrayRecord` back as a numpy array."""
    return x.array() if isinstance(x, ArrayRecord) else _rebuild(x, _arrays)


_NODE = dict | list | tuple | np.ndarray | torch.Tensor | ArrayRecord


def _rebuild(x: Any, f: Any) -> Any:
    """The containers of a state tree rebuilt with ``f`` applied to their members; a flat list
    (its first member no container or array: the id maps) copied as it is; anything else shared."""
    if isinstance(x, dict):
        return type(x)((k, f(v)) for k, v in x.items())
    if isinstance(x, tuple) and any(isinstance(v, _NODE) for v in x):
        return type(x)(f(v) for v in x)
    if isinstance(x, list) and x and isinstance(x[0], _NODE):
        return type(x)(f(v) for v in x)
    return type(x)(x) if isinstance(x, list | tuple) else x


def write_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` atomically: a temporary file beside ``path``, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(_records(state), fh, pickle_protocol=pickle.HIGHEST_PROTOCOL)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The state in ``path``; :class:`CorruptDataError` when it is unreadable, foreign or of another version."""
    try:
        # Our own file format: it holds numpy arrays and dataclasses besides tensors.
        state = _arrays(torch.load(path, map_location="cpu", weights_only=False))
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise CorruptDataError(f"checkpoint {path} cannot be read: {exc}") from exc
    if not isinstance(state, dict) or state.get("magic") != MAGIC:
        raise CorruptDataError(f"{path} is not an rtrec checkpoint")
    if state.get("version") not in READABLE:
        raise CorruptDataError(f"checkpoint {path} has format version {state.get('version')}, expected {VERSION}")
    return state


def _clone(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone()


def copy_state(x: Any, tensor: Callable[[torch.Tensor], torch.Tensor] = _clone) -> Any:
    """A copy of a state tree that later learning cannot change: arrays and tensors copied
    (tensors with ``tensor``), containers rebuilt, everything else (strings, numbers, bytes,
    frozen configs) shared. Several times faster than ``copy.deepcopy``, which visits every
    string of the id maps."""
    if isinstance(x, np.ndarray):
        return x.copy()
    if isinstance(x, torch.Tensor):
        return tensor(x)
    return _rebuild(x, lambda v: copy_state(v, tensor))


class ShadowHold:
    """Part of a snapshot that :class:`Shadows` copied into its buffers: while it lives, the next
    snapshot clones afresh rather than overwrite what this one may still be writing."""

    __slots__ = ("__weakref__",)


class Shadows:
    """Buffers that the large tensors of a snapshot are copied into, kept for the next one.

    A fresh clone of the CTR model's hashed table and its Adagrad sums (2 x 71 MB by default)
    spends most of its time faulting new pages in, under the learner's lock; a copy into the
    buffers the last snapshot used does not. Costs one standing copy of those tensors."""

    MIN_BYTES = 1 << 20

    def __init__(self) -> None:
        self._buffers: dict[tuple[Any, ...], torch.Tensor] = {}
        self._held: weakref.ref[ShadowHold] | None = None

    def copy(self, state: Any) -> tuple[Any, ShadowHold | None]:
        """:func:`copy_state` of ``state``, and the hold to keep with it (None: cloned afresh,
        because the last snapshot is still alive)."""
        if self._held is not None and self._held() is not None:
            return copy_state(state), None
        used: dict[tuple[Any, ...], torch.Tensor] = {}

        def into(t: torch.Tensor) -> torch.Tensor:
            if t.nbytes < self.MIN_BYTES:
                return _clone(t)
            key = (t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype)
            buf = used.get(key)
            if buf is None:
                buf = self._buffers.get(key)
                buf = torch.empty_like(t) if buf is None else buf
                used[key] = buf.copy_(t.detach())
            return buf

        out = copy_state(state, into)
        self._buffers = used  # what this snapshot did not use is let go
        hold = ShadowHold()
        self._held = weakref.ref(hold)
        return out, hold
