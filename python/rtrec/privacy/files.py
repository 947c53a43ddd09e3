"""Erasing user ids from the files a home keeps (the inbox and its ``done``/``rejected`` folders).

A row names a user when its ``user_id`` field is the id: JSON Lines (gzipped or not) are read
line by line, Parquet row by row. Free text (a line that is not a JSON object, a ``.reason``
file, other string columns) names the user when it holds the id's bytes and the id has at
least ``MIN_TEXT_MATCH`` characters: a short id such as ``"2"`` would match nearly anything.
A file is rewritten whole and swapped in atomically; a file left empty is removed, and so is
an unreadable file that holds a long id's bytes.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rtrec.events.privacy import MIN_TEXT_MATCH

__all__ = ["MIN_TEXT_MATCH", "scrub_files"]


def scrub_files(folder: Path, ids: Sequence[str]) -> int:
    """Remove every row naming any of ``ids`` from the files under ``folder``; files changed."""
    wanted = {str(i) for i in ids if i}
    if not wanted or not folder.is_dir():
        return 0
    changed = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        try:
            if _scrub(path, wanted):
                changed += 1
        except OSError:
            continue  # moved meanwhile by the inbox: the next forget or retention run sees it
    return changed


def _long(ids: set[str]) -> list[bytes]:
    return [i.encode() for i in ids if len(i) >= MIN_TEXT_MATCH]


def _names(line: bytes, ids: set[str], needles: list[bytes]) -> bool:
    try:
        row = json.loads(line)
    except ValueError:
        row = None
    if isinstance(row, dict) and "user_id" in row:
        return str(row["user_id"]) in ids or any(n in line for n in needles)
    return any(n in line for n in needles)


def _scrub(path: Path, ids: set[str]) -> bool:
    if path.name.endswith(".parquet"):
        return _scrub_parquet(path, ids)
    zipped = path.name.endswith(".gz")
    raw = path.read_bytes()
    try:
        data = gzip.decompress(raw) if zipped else raw
    except (OSError, EOFError):
        data = raw
    needles = _long(ids)
    lines = data.splitlines(keepends=True)
    kept = [line for line in lines if not _names(line, ids, needles)]
    if len(kept) == len(lines):
        return False
    if not kept:
        path.unlink()
        return True
    out = b"".join(kept)
    _replace(path, gzip.compress(out) if zipped else out)
    return True


def _scrub_parquet(path: Path, ids: set[str]) -> bool:
    needles = [n.decode() for n in _long(ids)]
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError):
        if any(n.encode() in path.read_bytes() for n in needles):
            path.unlink()
            return True
        return False
    drop = pa.array([False] * table.num_rows)
    for name in table.column_names:
        col = table.column(name)
        text = pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
        if name == "user_id" and (text or pa.types.is_integer(col.type)):
            drop = pc.or_(
                drop, pc.fill_null(pc.is_in(pc.cast(col, pa.string()), value_set=pa.array(sorted(ids))), False)
            )
        if text:
            for needle in needles:
                drop = pc.or_(drop, pc.fill_null(pc.match_substring(col, needle), False))
    if not pc.any(drop).as_py():
        return False
    kept = table.filter(pc.invert(drop))
    if kept.num_rows == 0:
        path.unlink()
        return True
    tmp = path.with_name(f".{path.name}.scrub.tmp")
    pq.write_table(kept, tmp)
    os.replace(tmp, path)
    return True


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.scrub.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
