"""Event and item files: which format a name says, and how each is read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rtrec.errors import InvalidInputError
from rtrec.events._sql import lit
from rtrec.events.validate import Unparsed

__all__ = ["file_format", "read_json_lines", "reader_sql"]

FILE_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
_COMPRESSION_SUFFIXES = (".gz", ".zst")
# JSON Lines are read line by line (so that a malformed line is rejected, not fatal) with a
# delimiter that valid JSON text cannot contain unescaped.
_JSONL_DELIM = "\x01"


def file_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION_SUFFIXES:
        suffixes.pop()
    fmt = FILE_FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise InvalidInputError(
            f"cannot tell the format of {path}: unknown extension {path.suffix or '(none)'}",
            hint="use .parquet, .csv, .jsonl/.ndjson or .json",
        )
    return fmt


def read_json_lines(path: Path, max_line_chars: int) -> list[Any]:
    """The rows of a JSON Lines file (plain or ``.gz``): each line decoded on its own; a line that
    cannot be (not JSON, too long, nested too deep) becomes an :class:`Unparsed` row with the reason."""
    import gzip

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    rows: list[Any] = []
    try:
        with opener(path, "rt", encoding="utf-8", errors="surrogateescape") as fh:
            for lineno, raw in enumerate(fh, 1):
                line = raw.rstrip("\r\n")
                if not line.strip():
                    continue
                if len(line) > max_line_chars:
                    rows.append(
                        Unparsed(f"row: line {lineno} has {len(line)} characters, over {max_line_chars}", line[:200])
                    )
                    continue
                try:
                    rows.append(json.loads(line))
                except RecursionError:
                    rows.append(Unparsed(f"row: line {lineno} is nested too deep to decode", line[:200]))
                except ValueError as exc:
                    rows.append(Unparsed(f"row: line {lineno} is not valid JSON ({exc})", line[:200]))
    except (OSError, EOFError, UnicodeError) as exc:
        raise InvalidInputError(f"cannot read {path} as JSON Lines: {exc}") from exc
    return rows


def reader_sql(path: Path, fmt: str) -> str:
    p = lit(str(path))
    if fmt == "parquet":
        return f"SELECT * FROM read_parquet({p})"
    if fmt == "csv":
        return f"SELECT * FROM read_csv({p}, header = true, all_varchar = true)"
    if fmt == "jsonl":
        return (
            f"SELECT line FROM read_csv({p}, columns = {{'line': 'VARCHAR'}}, header = false, "
            f"delim = {lit(_JSONL_DELIM)}, quote = '', escape = '', auto_detect = false) "
            "WHERE line IS NOT NULL AND trim(line) <> ''"
        )
    return f"SELECT CAST(json AS VARCHAR) AS line FROM read_json_objects({p}, format = 'auto')"
