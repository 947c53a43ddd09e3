"""The inbox: producers that cannot speak HTTP drop Parquet or JSONL files into ``$RTREC_HOME/inbox/``.

Event files go in ``inbox/`` and catalog files in ``inbox/items/``: Parquet, or JSON Lines
(``.jsonl``, ``.ndjson``, or gzipped ``.jsonl.gz``) whose lines are checked one by one, so a
bad or oversized line is rejected alone. A symbolic link to a file outside the inbox is
rejected unread. Write a file under a
name starting with ``.`` or ending in ``.tmp``/``.part`` and rename it when complete: those
names are ignored, so half-written files are never read. Each file is ingested in one
transaction, then moved to ``inbox/done/`` or, when it cannot be used at all, to
``inbox/rejected/`` next to a ``<name>.reason`` file saying why. Rows rejected inside an
otherwise good file are listed in ``done/<name>.reason``. If the daemon dies between the
commit and the move, the file is ingested again on restart; events are deduplicated by
``event_id``, so nothing is counted twice.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtrec.errors import RtrecError

log = logging.getLogger("rtrec.serve.inbox")

SUFFIXES = (".parquet", ".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz")
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".reason")


@dataclass
class Outcome:
    """What happened to one inbox file."""

    path: Path
    moved_to: Path
    ok: bool
    items: bool
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    reason: str | None = None
    details: list[dict[str, Any]] = field(default_factory=list)


def pending(inbox: Path) -> list[tuple[Path, bool]]:
    """Complete files waiting in ``inbox`` (events) and ``inbox/items`` (catalog), oldest first."""
    out: list[tuple[float, str, Path, bool]] = []
    for folder, items in ((inbox, False), (inbox / "items", True)):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            name = p.name
            if name.startswith(".") or name.endswith(IGNORED_SUFFIXES) or not p.is_file():
                continue
            try:
                mtime = p.stat().st_mtime
            except FileNotFoundError:  # moved away by someone else meanwhile
                continue
            out.append((mtime, name, p, items))
    out.sort(key=lambda t: (t[0], t[1]))
    return [(p, items) for _, _, p, items in out]


def ensure_dirs(inbox: Path) -> None:
    for sub in ("", "items", "done", "rejected"):
        (inbox / sub).mkdir(parents=True, exist_ok=True)


def process(path: Path, items: bool, ingest: Callable[[Path, bool], Any], inbox: Path) -> Outcome:
    """Ingest one file with ``ingest(path, items)`` and move it to ``done/`` or ``rejected/``.

    ``ingest`` returns an object with ``accepted``, ``duplicates`` and ``rejected`` (a list
    of objects with ``index`` and ``reason``) for events, or a row count for items; it
    raises :class:`~rtrec.errors.RtrecError` when the file as a whole is unusable.
    """
    if not path.name.lower().endswith(SUFFIXES):
        return _reject(
            path,
            items,
            inbox,
            f"unsupported file type {path.suffix or '(none)'!r}: use .parquet, .jsonl, .ndjson or .jsonl.gz",
        )
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(inbox.resolve()):
            # Never read what a link points to outside the inbox: it could be any file the daemon can read.
            return _reject(path, items, inbox, "a link to a file outside the inbox: not read")
    try:
        result = ingest(path, items)
    except RtrecError as exc:
        reason = str(exc) + (f" (hint: {exc.hint})" if exc.hint else "")
        return _reject(path, items, inbox, reason)
    except (OSError, ValueError) as exc:  # unreadable or undecodable file: the producer's problem
        return _reject(path, items, inbox, f"{type(exc).__name__}: {exc}")
    if isinstance(result, int):
        dest = _move(path, inbox / "done")
        return Outcome(path, dest, True, items, accepted=result)
    rejected = list(getattr(result, "rejected", []) or [])
    details = [{"index": int(r.index), "reason": str(r.reason)} for r in rejected]
    accepted = int(getattr(result, "accepted", 0))
    duplicates = int(getattr(result, "duplicates", 0))
    if rejected and accepted == 0 and duplicates == 0:
        first = details[0]
        reason = f"all {len(details)} rows rejected; first: row {first['index']}: {first['reason']}"
        out = _reject(path, items, inbox, reason, details)
        out.rejected = len(details)
        return out
    dest = _move(path, inbox / "done")
    if details:
        _write_reason(dest, f"{len(details)} rows rejected", details)
    return Outcome(path, dest, True, items, accepted, duplicates, len(details), details=details)


def _reject(path: Path, items: bool, inbox: Path, reason: str, details: list[dict[str, Any]] | None = None) -> Outcome:
    dest = _move(path, inbox / "rejected")
    _write_reason(dest, reason, details or [])
    log.warning("inbox: rejected %s: %s", path.name, reason)
    return Outcome(path, dest, False, items, reason=reason, details=details or [])


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / path.name
    if dest.exists():  # the same name dropped twice: keep both
        dest = folder / f"{path.stem}.{time.time_ns()}{path.suffix}"
    os.replace(path, dest)
    os.utime(dest)  # its age in done/ or rejected/ counts from now (privacy.inbox_keep_days)
    return dest


def _write_reason(dest: Path, reason: str, details: list[dict[str, Any]]) -> None:
    text = reason + "\n"
    for d in details[:1000]:
        text += json.dumps(d) + "\n"
    tmp = dest.with_name(dest.name + ".reason.tmp")
    tmp.write_text(text)
    os.replace(tmp, dest.with_name(dest.name + ".reason"))
