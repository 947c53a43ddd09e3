"""One way to make values JSON-safe: for ``/v1/stats``, ``report.json`` and stored JSON text.

>>> import numpy as np
>>> jsonable({"a": np.float32(0.5), "b": [float("nan"), np.int64(3)]}, digits=3)
{'a': 0.5, 'b': [None, 3]}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["jsonable"]


def jsonable(obj: Any, *, digits: int | None = None) -> Any:
    """A copy of ``obj`` that :func:`json.dumps` takes: numpy values become Python ones, non-finite
    floats ``None``, times ISO 8601 text, paths and bytes text; floats rounded to ``digits``."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v, digits=digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v, digits=digits) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist(), digits=digits)
    if isinstance(obj, np.generic):
        return jsonable(obj.item(), digits=digits)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None
        return round(obj, digits) if digits is not None else obj
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    return obj
