"""Checkpoint files of the learner: written atomically, read with a check that they are ours and whole."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtrec.errors import CorruptDataError

__all__ = ["MAGIC", "VERSION", "copy_state", "read_checkpoint", "write_checkpoint"]

MAGIC = "rtrec-checkpoint"
VERSION = 2


def write_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` atomically: a temporary file beside ``path``, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh, pickle_protocol=pickle.HIGHEST_PROTOCOL)
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
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise CorruptDataError(f"checkpoint {path} cannot be read: {exc}") from exc
    if not isinstance(state, dict) or state.get("magic") != MAGIC:
        raise CorruptDataError(f"{path} is not an rtrec checkpoint")
    if state.get("version") != VERSION:
        raise CorruptDataError(f"checkpoint {path} has format version {state.get('version')}, expected {VERSION}")
    return state


def copy_state(x: Any) -> Any:
    """A copy of a state tree that later learning cannot change: arrays and tensors copied,
    containers rebuilt, everything else (strings, numbers, bytes, frozen configs) shared.
    Several times faster than ``copy.deepcopy``, which visits every string of the id maps."""
    if isinstance(x, np.ndarray):
        return x.copy()
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, dict):
        return type(x)((k, copy_state(v)) for k, v in x.items())
    if isinstance(x, list | tuple):
        if x and not isinstance(x[0], dict | list | tuple | np.ndarray | torch.Tensor):
            return type(x)(x)  # a flat list of immutable values
        return type(x)(copy_state(v) for v in x)
    return x
