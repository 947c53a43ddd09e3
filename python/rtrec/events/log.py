"""The append-only DuckDB event log: validated ingest, idempotent by ``event_id``, and tailing by sequence number."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from rtrec.config import EventsConfig
from rtrec.contracts import DriftAlarm
from rtrec.errors import InvalidInputError, StorageError
from rtrec.events._sql import (
    INVALID_ROW_ERROR,
    NOW_UTC,
    Limits,
    insert_sql,
    insert_valid_sql,
    kind_of,
    lit,
    q,
    staging_sql,
    surely_valid,
    ts_expr,
)
from rtrec.events.migrations import migrate
from rtrec.events.schema import EVENT_COLUMNS, EVENT_INPUT_COLUMNS, EVENT_SCHEMA, ITEM_COLUMNS, ITEM_SCHEMA
from rtrec.events.validate import Unparsed, Validator
from rtrec.jsonable import jsonable

__all__ = ["EventLog", "IngestSummary", "Rejected"]

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


@dataclass(frozen=True)
class Rejected:
    """A row that was not stored: its position in the input and why."""

    index: int
    reason: str


@dataclass
class IngestSummary:
    """What one ingest did. ``rejected`` rows are also stored in the ``rejected_events`` table."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    first_seq: int | None = None
    last_seq: int | None = None
    source: str = "api"

    @property
    def total(self) -> int:
        return self.accepted + self.duplicates + len(self.rejected)

    def merge(self, other: IngestSummary) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected.extend(other.rejected)
        if other.first_seq is not None and self.first_seq is None:
            self.first_seq = other.first_seq
        if other.last_seq is not None:
            self.last_seq = other.last_seq

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": len(self.rejected),
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
        }

    def __str__(self) -> str:
        seqs = f", seq {self.first_seq}..{self.last_seq}" if self.first_seq is not None else ""
        return (
            f"{self.source}: {self.accepted} accepted, {self.duplicates} duplicates, "
            f"{len(self.rejected)} rejected{seqs}"
        )


def _dumps(value: Any) -> str:
    return json.dumps(jsonable(value), default=str, ensure_ascii=False)


def _hashes(ids: Sequence[str]) -> np.ndarray:
    """Python's hash of each event id (randomised per process, so only ever compared within one)."""
    return np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))


def _member(sorted_hashes: np.ndarray, h: np.ndarray) -> np.ndarray:
    if len(sorted_hashes) == 0:
        return np.zeros(len(h), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_hashes, h), len(sorted_hashes) - 1)
    return sorted_hashes[pos] == h


class _StoredIds:
    """Hashes of every stored ``event_id``, so that ingest finds duplicates without scanning the log.

    A miss is certain (every insert adds its ids, and the set starts from the table); a hit may
    be a hash collision, so the caller confirms hits against the table. Costs 8 bytes per stored
    event: one large sorted array, plus a sorted run of recent ids merged into it once the run
    passes an eighth of its size (so each insert copies the small run, not the whole array).
    """

    def __init__(self, hashes: np.ndarray) -> None:
        self._base = np.sort(hashes.astype(np.int64, copy=False))
        self._recent = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._base) + len(self._recent)

    def contains(self, h: np.ndarray) -> np.ndarray:
        return _member(self._base, h) | _member(self._recent, h)

    def add(self, h: np.ndarray) -> None:
        h = np.sort(h)
        self._recent = np.insert(self._recent, np.searchsorted(self._recent, h), h)
        if len(self._recent) > max(1 << 16, len(self._base) >> 3):
            self._base = np.insert(self._base, np.searchsorted(self._base, self._recent), self._recent)
            self._recent = np.zeros(0, dtype=np.int64)


@dataclass
class _Pending:
    """One caller's batch waiting for a group commit."""

    table: pa.Table
    source: str
    summary: IngestSummary | None = None
    error: BaseException | None = None


def _file_format(path: Path) -> str:
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


def _reader_sql(path: Path, fmt: str) -> str:
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


class EventLog:
    """The rtrec database: events, rejected events, the item catalog and learner tables.

    Safe to share between threads: writes are serialised by a lock, reads use a fresh cursor.

    >>> log = EventLog.open(":memory:")
    >>> log.ingest([{"ts": 1700000000, "user_id": 1, "item_id": "a", "event_type": "click"}]).accepted
    1
    >>> [b.num_rows for b in log.tail(0)]
    [1]
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: str, events: EventsConfig | None = None) -> None:
        self.path = path
        self.validator = Validator(events)
        c = self.validator.cfg
        self.limits = Limits(c.max_future_s, self.validator.oldest_us, c.max_id_chars, c.max_json_chars)
        self._con = con
        self._lock = threading.RLock()
        self._cursor_lock = threading.Lock()
        self._read_root = con.cursor()
        self._closed = False
        row = con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchall()
        self._last_seq = int(row[0][0]) if row else 0
        self._ids: _StoredIds | None = None  # loaded by the first ingest (or warm_up)
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, events: EventsConfig | None = None) -> EventLog:
        """Open (creating it and its parent directory when needed) and migrate a database.

        ``events`` sets what ingest accepts (``[events]`` in the config; defaults when None).
        """
        spec = str(path)
        if spec != ":memory:":
            p = Path(path).expanduser()
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the directory of {p}: {exc}") from exc
            spec = str(p)
        try:
            con = duckdb.connect(spec)
        except duckdb.Error as exc:
            raise StorageError(
                f"cannot open the event log {spec}: {exc}",
                hint="is another rtrec process (a daemon) using this home?",
            ) from exc
        con.execute("SET TimeZone = 'UTC'")
        limit = (events or EventsConfig()).duckdb_memory_limit
        try:
            con.execute(f"SET memory_limit = {lit(limit)}")
        except duckdb.Error as exc:
            con.close()
            raise InvalidInputError(
                f"events.duckdb_memory_limit: {limit!r} is not a DuckDB memory size ({exc})"
            ) from None
        migrate(con)
        return cls(con, spec, events)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._read_root.close()
                self._con.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor for read queries; use one per thread (or per call) and close it after."""
        with self._cursor_lock:
            if self._closed:
                raise StorageError("the event log is closed")
            cur = self._read_root.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        return cur

    # -- ingest --------------------------------------------------------------------------------

    def ingest(
        self,
        data: pa.Table | pa.RecordBatch | Sequence[Mapping[str, Any]],
        *,
        source: str = "api",
        order_by_ts: bool = False,
    ) -> IngestSummary:
        """Validate and append events; committed before this returns.

        Invalid rows go to ``rejected_events`` (and ``summary.rejected``); a row whose ``event_id``
        is already stored (or repeats an earlier row of ``data``) counts as a duplicate. Sequence
        numbers follow input order, or event time when ``order_by_ts``.

        Concurrent calls are group-committed: while one call writes, the batches of the others
        queue, and the next writer commits them together in one statement when they are all
        valid and new (each call still gets its own summary, and its rows stay consecutive).
        Otherwise each batch is ingested on its own, in queue order, as if the calls had come
        one after another.
        """
        table, kept, rejected = self._to_arrow(data)
        if order_by_ts:
            with self._lock:
                summary = self._ingest_arrow(table, source=source, order_by_ts=True, json_rows=False)
                if rejected:
                    self._store_rejected_rows(rejected, source=source)
            return _with_rejected(summary, kept, rejected)
        job = _Pending(table, source)
        with self._queue_lock:
            self._queue.append(job)
        with self._lock:
            if job.summary is None and job.error is None:
                with self._queue_lock:
                    jobs, self._queue = self._queue, []
                self._commit_group(jobs)
        if job.error is not None:
            raise job.error
        assert job.summary is not None
        if rejected:
            with self._lock:
                self._store_rejected_rows(rejected, source=source)
        return _with_rejected(job.summary, kept, rejected)

    def warm_up(self) -> None:
        """Load the hashes of the stored event ids now; the first ingest would otherwise wait for them."""
        with self._lock:
            self._stored_ids()

    def _stored_ids(self) -> _StoredIds:
        if self._ids is None:
            parts = [np.zeros(0, dtype=np.int64)]
            reader = self._con.sql("SELECT event_id FROM events").to_arrow_reader(1 << 16)
            for batch in reader:
                parts.append(_hashes(batch.column(0).to_pylist()))
            self._ids = _StoredIds(np.concatenate(parts))
        return self._ids

    def _commit_group(self, jobs: list[_Pending]) -> None:
        """Commit queued batches in order, runs of compatible ones together (see :meth:`ingest`)."""
        i = 0
        while i < len(jobs):
            j = i + 1
            first = jobs[i]
            while j < len(jobs) and jobs[j].source == first.source and jobs[j].table.schema.equals(first.table.schema):
                j += 1
            run, i = jobs[i:j], j
            try:
                if len(run) > 1:
                    seq = self._insert_if_all_valid(pa.concat_tables([p.table for p in run]), run[0].source)
                    if seq is not None:
                        for p in run:
                            n = p.table.num_rows
                            p.summary = IngestSummary(accepted=n, source=p.source)
                            if n:
                                p.summary.first_seq, p.summary.last_seq = seq, seq + n - 1
                            seq += n
                        continue
            except Exception as exc:
                for p in run:
                    p.error = exc
                continue
            for p in run:
                try:
                    p.summary = self._ingest_arrow(p.table, source=p.source, order_by_ts=False, json_rows=False)
                except Exception as exc:
                    p.error = exc

    def _insert_if_all_valid(self, table: pa.Table, source: str) -> int | None:
        """The fast path: one INSERT statement when every row is valid and new; its first seq, or None.

        None means nothing was written and the caller must take the staging path (which finds
        the reasons and the duplicates). Rows need a string ``event_id`` each, so that the
        duplicate check is one lookup in memory.
        """
        n = table.num_rows
        if n == 0 or "event_id" not in table.column_names:
            return None
        col = table.column("event_id")
        if kind_of(col.type) != "str" or col.null_count:
            return None
        h = _hashes(col.to_pylist())
        ids = self._stored_ids()
        if len(np.unique(h)) != n or ids.contains(h).any():
            return None
        kinds = {f.name: kind_of(f.type) for f in table.schema}
        first = self._last_seq + 1
        con = self._con
        con.register("_rtrec_in", table.append_column("_idx", pa.array(np.arange(n, dtype=np.int64))))
        try:
            if surely_valid(table, self.limits):
                con.execute(insert_sql("_rtrec_in", kinds, first, self.limits), [source])
            else:
                con.execute(insert_valid_sql("_rtrec_in", kinds, first, self.limits), [source])
        except duckdb.Error as exc:
            if INVALID_ROW_ERROR in str(exc):
                return None
            raise StorageError(f"ingest into {self.path} failed: {_first_line(exc)}") from exc
        finally:
            con.unregister("_rtrec_in")
        self._last_seq += n
        ids.add(h)
        return first

    def ingest_file(
        self, path: str | Path, *, items: bool = False, order_by_ts: bool = False, batch_size: int = 500_000
    ) -> IngestSummary:
        """Ingest a Parquet, CSV, JSON Lines or JSON file through DuckDB's readers, batch by batch.

        Each batch is one transaction. With ``items`` the file is a catalog and is upserted; the
        summary's ``accepted`` is then the number of items written.
        """
        p = Path(path).expanduser()
        if not p.exists():
            raise InvalidInputError(f"file {p} does not exist")
        if not p.is_file():
            raise InvalidInputError(f"{p} is not a file")
        fmt = _file_format(p)
        source = p.name
        if items:
            n = self.upsert_items(p)
            return IngestSummary(accepted=n, source=source)
        if fmt == "jsonl":
            # In Python, line by line: each line is a row checked on its own, as over HTTP.
            return self.ingest(
                read_json_lines(p, self.validator.cfg.max_json_chars * 4), source=source, order_by_ts=order_by_ts
            )
        query = _reader_sql(p, fmt)
        cur = self.cursor()
        summary = IngestSummary(source=source)
        try:
            try:
                schema = cur.sql(f"SELECT * FROM ({query}) LIMIT 0").to_arrow_table().schema
            except duckdb.Error as exc:
                raise InvalidInputError(f"cannot read {p} as {fmt}: {_first_line(exc)}") from exc
            json_rows = fmt in ("jsonl", "json")
            self._check_columns(schema.names) if not json_rows else None
            if order_by_ts:
                if json_rows:
                    expr, _ = ts_expr("(TRY_CAST(line AS JSON) -> '$.ts')", "json")
                elif "ts" in schema.names:
                    expr, _ = ts_expr(q("ts"), kind_of(schema.field("ts").type))
                else:
                    expr = "NULL"
                query = f"SELECT * FROM ({query}) ORDER BY {expr} NULLS LAST"
            with self._lock:
                try:
                    reader = cur.sql(query).to_arrow_reader(batch_size)
                    offset = 0
                    for batch in reader:
                        table = pa.Table.from_batches([batch])
                        part = self._ingest_arrow(
                            table, source=source, order_by_ts=order_by_ts, json_rows=json_rows, index_offset=offset
                        )
                        summary.merge(part)
                        offset += batch.num_rows
                except duckdb.Error as exc:
                    raise InvalidInputError(
                        f"cannot read {p} as {fmt}: {_first_line(exc)}",
                        hint=f"{summary.accepted} rows from earlier batches were stored",
                    ) from exc
        finally:
            cur.close()
        return summary

    @staticmethod
    def _check_columns(names: Sequence[str]) -> None:
        unknown = [n for n in names if n not in EVENT_INPUT_COLUMNS and n != "seq"]
        if unknown:
            raise InvalidInputError(
                f"unknown event field {unknown[0]!r}",
                hint=f"event fields: {', '.join(EVENT_INPUT_COLUMNS)}",
            )

    def _to_arrow(self, data: Any) -> tuple[pa.Table, np.ndarray | None, list[tuple[int, str, str]]]:
        """An Arrow table of the rows to store, the input index of each (None: all, in order), and
        the rows rejected before Arrow: (index, reason, raw JSON text).

        Rows given as objects are checked one by one (:class:`rtrec.events.validate.Validator`),
        so that a row's verdict never depends on the other rows of its batch.
        """
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        if isinstance(data, pa.Table):
            self._check_columns(data.column_names)
            if "seq" in data.column_names:
                data = data.drop_columns(["seq"])
            return data, None, []
        if isinstance(data, Mapping | str | bytes) or not isinstance(data, Sequence):
            raise InvalidInputError(
                f"events must be a list of objects or an Arrow table, got {type(data).__name__}",
            )
        check = self.validator.event
        now_us = round(time.time() * 1e6)
        good: list[dict[str, Any]] = []
        kept: list[int] = []
        rejected: list[tuple[int, str, str]] = []
        for i, row in enumerate(data):
            out = check(row, now_us)
            if isinstance(out, str):
                rejected.append((i, out, raw_json(row)))
            else:
                good.append(out)
                kept.append(i)
        return _events_table(good), np.asarray(kept, np.int64), rejected

    @contextlib.contextmanager
    def _transaction(self, name: str, table: pa.Table, what: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run the block in one transaction with ``table`` registered as ``name``.

        Commits when the block ends, rolls back when it raises; a DuckDB failure becomes a
        :class:`StorageError` that says what was being written.
        """
        con = self._con
        con.register(name, table)
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except duckdb.Error as exc:
            raise StorageError(f"{what} into {self.path} failed: {_first_line(exc)}") from exc
        finally:
            con.unregister(name)

    def _ingest_arrow(
        self, table: pa.Table, *, source: str, order_by_ts: bool, json_rows: bool, index_offset: int = 0
    ) -> IngestSummary:
        summary = IngestSummary(source=source)
        n = table.num_rows
        if n == 0:
            return summary
        if not json_rows and not order_by_ts:
            first = self._insert_if_all_valid(table, source)
            if first is not None:
                summary.accepted, summary.first_seq, summary.last_seq = n, first, first + n - 1
                return summary
        ids = self._stored_ids()
        if json_rows:
            kinds: dict[str, str] = {}
        else:
            kinds = {f.name: kind_of(f.type) for f in table.schema}
        staged_in = table.append_column("_idx", pa.array(np.arange(n, dtype=np.int64)))
        with self._transaction("_rtrec_in", staged_in, "ingest") as con:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _rtrec_staged AS "
                + staging_sql("_rtrec_in", kinds, json_rows=json_rows, limits=self.limits)
            )
            bad = con.execute(
                "SELECT _idx, reason FROM _rtrec_staged WHERE reason IS NOT NULL ORDER BY _idx"
            ).fetchall()
            if bad:
                self._store_rejected(table, bad, source=source, json_rows=json_rows, index_offset=index_offset)
            accepted, new_ids = self._insert_staged(n, source=source, order_by_ts=order_by_ts)
            con.execute("DROP TABLE _rtrec_staged")
        ids.add(new_ids)
        summary.accepted = accepted
        summary.rejected = [Rejected(index_offset + int(i), str(r)) for i, r in bad]
        summary.duplicates = n - accepted - len(bad)
        if accepted:
            summary.first_seq = self._last_seq + 1
            summary.last_seq = self._last_seq + accepted
            self._last_seq += accepted
        return summary

    def _insert_staged(self, n: int, *, source: str, order_by_ts: bool) -> tuple[int, np.ndarray]:
        """Append the valid, new rows of ``_rtrec_staged`` with consecutive sequence numbers.

        Returns how many, and the hashes of their event ids (for the caller to add once committed).
        """
        con = self._con
        # Rows not stored: rejected, repeating an earlier row's event_id, or already in the log.
        # Usually few, so find them first and number the rest in numpy (a window function over
        # the whole batch would cost more than the insert itself). Only ids whose hash is among
        # the stored ones are looked up in the log: a scan of every stored id per batch was the
        # largest cost of an ingest once the log held a few hundred thousand events.
        valid = con.execute("SELECT _idx, event_id FROM _rtrec_staged WHERE reason IS NULL ORDER BY _idx").fetchall()
        eids = [e for _, e in valid]
        h = _hashes(eids)
        maybe = self._stored_ids().contains(h)
        stored: set[str] = set()
        if maybe.any():
            cand = pa.table({"event_id": pa.array([e for e, m in zip(eids, maybe.tolist(), strict=True) if m])})
            con.register("_rtrec_maybe", cand)
            try:
                stored = {
                    str(r[0])
                    for r in con.execute(
                        "SELECT DISTINCT e.event_id FROM events e SEMI JOIN _rtrec_maybe m ON e.event_id = m.event_id"
                    ).fetchall()
                }
            finally:
                con.unregister("_rtrec_maybe")
        first_of: set[str] = set()
        keep_pos: list[int] = []
        for pos, e in enumerate(eids):
            if e in stored or e in first_of:
                continue
            first_of.add(e)
            keep_pos.append(pos)
        kept_h = h[np.asarray(keep_pos, dtype=np.int64)]
        base = self._last_seq
        cols = ", ".join(EVENT_INPUT_COLUMNS)
        if len(keep_pos) == n and not order_by_ts:
            con.execute(
                f"INSERT INTO events (seq, {cols}, source) SELECT {base} + 1 + _idx, {cols}, ? FROM _rtrec_staged",
                [source],
            )
            return n, kept_h
        kept = np.asarray([valid[p][0] for p in keep_pos], dtype=np.int64)
        if len(kept) == 0:
            return 0, kept_h
        if order_by_ts:
            got = con.execute(
                "SELECT _idx, epoch_us(ts) AS t FROM _rtrec_staged WHERE reason IS NULL ORDER BY _idx"
            ).fetchnumpy()
            ts_of = np.zeros(n, dtype=np.int64)
            ts_of[np.asarray(got["_idx"], dtype=np.int64)] = np.asarray(got["t"], dtype=np.int64)
            kept = kept[np.lexsort((kept, ts_of[kept]))]
        mapping = pa.table({"_idx": kept, "_seq": np.arange(base + 1, base + 1 + len(kept), dtype=np.int64)})
        con.register("_rtrec_map", mapping)
        try:
            con.execute(
                f"INSERT INTO events (seq, {cols}, source) SELECT m._seq, {cols}, ? "
                "FROM _rtrec_staged s JOIN _rtrec_map m ON s._idx = m._idx",
                [source],
            )
        finally:
            con.unregister("_rtrec_map")
        return len(kept), kept_h

    def _store_rejected_rows(self, rejected: list[tuple[int, str, str]], *, source: str) -> None:
        """Record rows refused before Arrow: (input index, reason, raw JSON text)."""
        rej = pa.table(
            {
                "row_index": pa.array([i for i, _, _ in rejected], pa.int64()),
                "reason": pa.array([r for _, r, _ in rejected], pa.string()),
                "raw": pa.array([raw for *_, raw in rejected], pa.string()),
            }
        )
        self._con.register("_rtrec_rej", rej)
        try:
            self._con.execute(
                f"INSERT INTO rejected_events SELECT {NOW_UTC}, ?, row_index, reason, raw FROM _rtrec_rej", [source]
            )
        except duckdb.Error as exc:
            raise StorageError(f"recording rejected rows in {self.path} failed: {_first_line(exc)}") from exc
        finally:
            self._con.unregister("_rtrec_rej")

    def _store_rejected(
        self, table: pa.Table, bad: list[tuple[Any, Any]], *, source: str, json_rows: bool, index_offset: int
    ) -> None:
        idx = [int(i) for i, _ in bad]
        rows = table.take(pa.array(idx, pa.int64())).to_pylist()
        raws = [str(r["line"]) if json_rows else _dumps(r) for r in rows]
        rej = pa.table(
            {
                "row_index": pa.array([index_offset + i for i in idx], pa.int64()),
                "reason": pa.array([str(r) for _, r in bad], pa.string()),
                "raw": pa.array(raws, pa.string()),
            }
        )
        self._con.register("_rtrec_rej", rej)
        try:
            self._con.execute(
                f"INSERT INTO rejected_events SELECT {NOW_UTC}, ?, row_index, reason, raw FROM _rtrec_rej", [source]
            )
        finally:
            self._con.unregister("_rtrec_rej")

    # -- catalog -------------------------------------------------------------------------------

    def upsert_items(
        self, data: pa.Table | Sequence[Mapping[str, Any]] | str | Path, *, rejected: list[Rejected] | None = None
    ) -> int:
        """Insert or replace catalog items; returns how many were written.

        ``tags`` may be a list or a ``"a|b"`` string; ``attrs`` an object or JSON text. Columns
        other than the item fields are merged into ``attrs``. A later row for the same
        ``item_id`` wins. Rows given as objects are checked one by one: with ``rejected`` a bad
        row is skipped and listed there with its reason, the others written; without it the
        first bad row fails the whole call (nothing is written). In a table or file a row
        without ``item_id`` fails the whole call.
        """
        if isinstance(data, str | Path):
            p = Path(data).expanduser()
            if not p.is_file():
                raise InvalidInputError(f"file {p} does not exist")
            fmt = _file_format(p)
            if fmt in ("jsonl", "json"):
                sql = f"SELECT * FROM read_json({lit(str(p))}, format = 'auto')"
            elif fmt == "csv":
                sql = f"SELECT * FROM read_csv({lit(str(p))}, header = true)"
            else:
                sql = _reader_sql(p, fmt)
            cur = self.cursor()
            try:
                table = cur.sql(sql).to_arrow_table()
            except duckdb.Error as exc:
                raise InvalidInputError(f"cannot read {p} as {fmt}: {_first_line(exc)}") from exc
            finally:
                cur.close()
        elif isinstance(data, pa.RecordBatch):
            table = pa.Table.from_batches([data])
        elif isinstance(data, pa.Table):
            table = data
        elif isinstance(data, Sequence) and not isinstance(data, str | bytes):
            good: list[Mapping[str, Any]] = []
            for i, row in enumerate(data):
                out = self.validator.item(row)
                if isinstance(out, str):
                    if rejected is None:
                        raise InvalidInputError(f"items row {i}: {out}; no items were written")
                    rejected.append(Rejected(i, out))
                else:
                    good.append(out)
            table = _items_from_rows(good)
        else:
            raise InvalidInputError(
                f"items must be a list of objects, an Arrow table or a file, got {type(data).__name__}"
            )
        if table.num_rows == 0:
            return 0
        if "item_id" not in table.column_names:
            raise InvalidInputError("items: item_id: missing column", hint=f"item fields: {', '.join(ITEM_COLUMNS)}")
        return self._upsert_arrow(table)

    def _upsert_arrow(self, table: pa.Table) -> int:
        kinds = {f.name: kind_of(f.type) for f in table.schema}
        types = {f.name: f.type for f in table.schema}
        iid = q("item_id")
        if kinds["item_id"] == "str":
            id_expr = f"CASE WHEN trim({iid}) <> '' THEN {iid} END"
        elif kinds["item_id"] == "int":
            id_expr = f"CAST({iid} AS VARCHAR)"
        else:
            raise InvalidInputError(f"items: item_id: expected strings or integers, got {types['item_id']}")

        def text(name: str) -> str:
            return f"CAST({q(name)} AS VARCHAR)" if name in kinds else "NULL::VARCHAR"

        if "tags" not in kinds:
            tags = "NULL::VARCHAR[]"
        elif pa.types.is_list(types["tags"]) or pa.types.is_large_list(types["tags"]):
            tags = f"CAST({q('tags')} AS VARCHAR[])"
        elif kinds["tags"] == "str":
            tags = f"list_filter(list_transform(string_split({q('tags')}, '|'), lambda x: trim(x)), lambda x: x <> '')"
        elif kinds["tags"] == "null":
            tags = "NULL::VARCHAR[]"
        else:
            raise InvalidInputError(f"items: tags: expected a list of strings or 'a|b' text, got {types['tags']}")
        if "attrs" not in kinds or kinds["attrs"] == "null":
            attrs = "NULL::VARCHAR"
        elif kinds["attrs"] == "struct":
            attrs = f"CAST(to_json({q('attrs')}) AS VARCHAR)"
        elif kinds["attrs"] == "str":
            attrs = q("attrs")
        else:
            raise InvalidInputError(f"items: attrs: expected a JSON object, got {types['attrs']}")
        extra = [n for n in table.column_names if n not in ITEM_COLUMNS]
        if extra:
            packed = ", ".join(f"{q(n)} := {q(n)}" for n in extra)
            attrs = f"CAST(json_merge_patch(coalesce({attrs}, '{{}}'), to_json(struct_pack({packed}))) AS VARCHAR)"
        if "updated_at" in kinds:
            upd, _ = ts_expr(q("updated_at"), kinds["updated_at"])
            upd = f"coalesce({upd}, {NOW_UTC})"
        else:
            upd = NOW_UTC
        staged = table.append_column("_idx", pa.array(np.arange(table.num_rows, dtype=np.int64)))
        with self._lock, self._transaction("_rtrec_items", staged, "item upsert") as con:
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE _rtrec_items_staged AS
                    SELECT _idx, {id_expr} AS item_id, {text("title")} AS title,
                           {text("description")} AS description, {text("category")} AS category,
                           {tags} AS tags, {attrs} AS attrs, {upd} AS updated_at
                    FROM _rtrec_items"""
            )
            bad = con.execute(
                "SELECT _idx, CASE WHEN item_id IS NULL THEN 'item_id: missing' "
                "ELSE 'attrs: malformed value (expected a JSON object)' END FROM _rtrec_items_staged "
                "WHERE item_id IS NULL OR (attrs IS NOT NULL AND (NOT json_valid(attrs) "
                "OR json_type(TRY_CAST(attrs AS JSON)) <> 'OBJECT')) ORDER BY _idx LIMIT 1"
            ).fetchall()
            if bad:
                raise InvalidInputError(f"items row {bad[0][0]}: {bad[0][1]}; no items were written")
            row = con.execute(
                "INSERT OR REPLACE INTO items SELECT item_id, title, description, category, tags, attrs, "
                "updated_at FROM _rtrec_items_staged QUALIFY row_number() OVER "
                "(PARTITION BY item_id ORDER BY _idx DESC) = 1"
            ).fetchall()
            con.execute("DROP TABLE _rtrec_items_staged")
        return int(row[0][0]) if row else 0

    # -- reads ---------------------------------------------------------------------------------

    def tail(self, after_seq: int, *, max_rows: int | None = None, batch_size: int = 65536) -> Iterator[pa.RecordBatch]:
        """Events with ``seq > after_seq`` in sequence order, as record batches of ``EVENT_SCHEMA``."""
        sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE seq > ? ORDER BY seq"
        params: list[Any] = [int(after_seq)]
        if max_rows is not None:
            sql += " LIMIT ?"
            params.append(int(max_rows))
        cur = self.cursor()
        try:
            reader = cur.sql(sql, params=params).to_arrow_reader(batch_size)
            for batch in reader:
                if batch.num_rows:
                    yield _conform(batch)
        finally:
            cur.close()

    def last_seq(self) -> int:
        """The highest sequence number stored (0 when the log is empty)."""
        return self._last_seq

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self.cursor()
        try:
            row = cur.execute(sql, list(params)).fetchall()
        finally:
            cur.close()
        return row[0][0] if row else None

    def count_events(self) -> int:
        return int(self._scalar("SELECT count(*) FROM events"))

    def record_alarms(self, alarms: Sequence[DriftAlarm]) -> None:
        """Append drift alarms to ``drift_alarms`` (event time, sequence number, detector, statistic)."""
        rows = [
            [datetime.fromtimestamp(a["ts"], UTC).replace(tzinfo=None), a["seq"], a["detector"], a["stat"]]
            for a in alarms
        ]
        with self._lock:
            self._con.executemany("INSERT INTO drift_alarms (ts, seq, detector, stat) VALUES (?, ?, ?, ?)", rows)

    def drift_alarms(self) -> pa.Table:
        """Every recorded drift alarm, oldest first: ts, seq, detector, stat."""
        return self._table("SELECT ts, seq, detector, stat FROM drift_alarms ORDER BY seq", None)

    def record_checkpoint(self, seq: int, path: str, model_version: int) -> None:
        """Note a checkpoint written (the file is what a restart reads; this table is a record)."""
        with self._lock:
            self._con.execute(
                f"INSERT INTO checkpoints (seq, path, created_at, model_version) VALUES (?, ?, {NOW_UTC}, ?)",
                [int(seq), path, int(model_version)],
            )

    def quarantine(self, rows: Sequence[tuple[int, str]]) -> None:
        """Record events (by ``seq``) that the learner set aside, each with the reason; they stay in the log."""
        if not rows:
            return
        t = pa.table(
            {"seq": pa.array([int(s) for s, _ in rows], pa.int64()), "reason": [str(r)[:2000] for _, r in rows]}
        )
        with self._lock:
            self._con.register("_rtrec_q", t)
            try:
                self._con.execute(f"INSERT INTO quarantined_events SELECT seq, reason, {NOW_UTC} FROM _rtrec_q")
            except duckdb.Error as exc:
                raise StorageError(f"recording quarantined events in {self.path} failed: {_first_line(exc)}") from exc
            finally:
                self._con.unregister("_rtrec_q")

    def quarantined(self, limit: int | None = None) -> pa.Table:
        """Quarantined events, newest first: seq, reason, quarantined_at."""
        return self._table("SELECT seq, reason, quarantined_at FROM quarantined_events ORDER BY seq DESC", limit)

    def count_quarantined(self) -> int:
        return int(self._scalar("SELECT count(*) FROM quarantined_events"))

    def count_rejected(self) -> int:
        return int(self._scalar("SELECT count(*) FROM rejected_events"))

    def rejected(self, limit: int | None = None) -> pa.Table:
        """Rejected rows, oldest first: rejected_at, source, row_index, reason, raw."""
        return self._table("SELECT * FROM rejected_events ORDER BY rejected_at, row_index", limit)

    def _table(self, sql: str, limit: int | None) -> pa.Table:
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        cur = self.cursor()
        try:
            return cur.sql(sql).to_arrow_table()
        finally:
            cur.close()

    def items(self) -> pa.Table:
        """The catalog, ordered by item_id, as ``ITEM_SCHEMA``."""
        cur = self.cursor()
        try:
            table = cur.sql(f"SELECT {', '.join(ITEM_COLUMNS)} FROM items ORDER BY item_id").to_arrow_table()
        finally:
            cur.close()
        return table.cast(ITEM_SCHEMA)

    def user_items(self, user_id: str, event_types: Sequence[str]) -> set[str]:
        """Items ``user_id`` had any of ``event_types`` with (for excluding already-seen items)."""
        if not event_types:
            return set()
        marks = ", ".join("?" for _ in event_types)
        cur = self.cursor()
        try:
            rows = cur.execute(
                f"SELECT DISTINCT item_id FROM events WHERE user_id = ? AND event_type IN ({marks})",
                [str(user_id), *event_types],
            ).fetchall()
        finally:
            cur.close()
        return {r[0] for r in rows}


_EVENT_TYPES_IN = [
    ("event_id", pa.string()),
    ("ts", pa.int64()),
    ("user_id", pa.string()),
    ("item_id", pa.string()),
    ("event_type", pa.string()),
    ("value", pa.float64()),
    ("request_id", pa.string()),
    ("propensity", pa.float64()),
    ("context", pa.string()),
]
#: Raw text kept for a rejected row is clipped to this many characters.
RAW_LIMIT = 65_536


def _events_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Validated, normalised rows as typed columns (``ts`` in epoch microseconds)."""
    cols = {name: pa.array([r[name] for r in rows], tp) for name, tp in _EVENT_TYPES_IN}
    cols["ts"] = cols["ts"].cast(pa.timestamp("us"))
    return pa.table(cols)


def raw_json(row: Any) -> str:
    """The row as JSON text for ``rejected_events.raw``: ASCII (a lone surrogate is escaped), clipped,
    and a placeholder when it cannot be written at all (nested too deep, say)."""
    if isinstance(row, Unparsed):
        return row.raw.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")[:RAW_LIMIT]
    try:
        text = json.dumps(row, ensure_ascii=True, default=str)
    except (RecursionError, ValueError, TypeError) as exc:
        text = json.dumps(f"<{type(row).__name__} not stored: {type(exc).__name__}>")
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT]


def _with_rejected(
    summary: IngestSummary, kept: np.ndarray | None, rejected: list[tuple[int, str, str]]
) -> IngestSummary:
    """Map the stored rows' indices back to the input, and add the rows rejected before Arrow."""
    if kept is None:
        return summary
    summary.rejected = sorted(
        [Rejected(int(kept[r.index]), r.reason) for r in summary.rejected]
        + [Rejected(i, reason) for i, reason, _ in rejected],
        key=lambda r: r.index,
    )
    return summary


def _conform(batch: pa.RecordBatch) -> pa.RecordBatch:
    if batch.schema.equals(EVENT_SCHEMA, check_metadata=False):
        return batch
    return pa.RecordBatch.from_arrays(
        [batch.column(i).cast(f.type) for i, f in enumerate(EVENT_SCHEMA)], schema=EVENT_SCHEMA
    )


def _items_from_rows(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidInputError(f"items row {i}: expected an object, got {type(row).__name__}")
        item_id = row.get("item_id")
        if item_id is None or (isinstance(item_id, str) and not item_id.strip()):
            raise InvalidInputError(f"items row {i}: item_id: missing; no items were written")
        if isinstance(item_id, bool) or not isinstance(item_id, str | int):
            raise InvalidInputError(f"items row {i}: item_id: expected a string or integer, got {item_id!r}")
        tags = row.get("tags")
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.split("|") if t.strip()]
        elif tags is not None:
            if not isinstance(tags, list | tuple):
                raise InvalidInputError(f"items row {i}: tags: expected a list or 'a|b' text, got {tags!r}")
            tags = [str(t) for t in tags]
        attrs = row.get("attrs")
        if isinstance(attrs, str):
            try:
                attrs = json.loads(attrs)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"items row {i}: attrs: not valid JSON ({exc})") from exc
        if attrs is not None and not isinstance(attrs, Mapping):
            raise InvalidInputError(f"items row {i}: attrs: expected a JSON object, got {attrs!r}")
        extra = {k: v for k, v in row.items() if k not in ITEM_COLUMNS}
        if extra:
            attrs = {**(attrs or {}), **extra}
        updated = row.get("updated_at")
        out.append(
            {
                "item_id": str(item_id),
                "title": None if row.get("title") is None else str(row["title"]),
                "description": None if row.get("description") is None else str(row["description"]),
                "category": None if row.get("category") is None else str(row["category"]),
                "tags": tags,
                "attrs": None if attrs is None else _dumps(attrs),
                "updated_at": None
                if updated is None
                else str(updated)
                if not isinstance(updated, int | float)
                else updated,
            }
        )
    upd = [r.pop("updated_at") for r in out]
    schema = pa.schema([f for f in ITEM_SCHEMA if f.name != "updated_at"])
    table = pa.Table.from_pylist(out, schema=schema)
    if any(u is not None for u in upd):
        if all(isinstance(u, int | float) or u is None for u in upd):
            table = table.append_column("updated_at", pa.array(upd, pa.float64()))
        else:
            table = table.append_column(
                "updated_at", pa.array([None if u is None else str(u) for u in upd], pa.string())
            )
    return table


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
