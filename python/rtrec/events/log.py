"""The append-only DuckDB event log: validated ingest, idempotent by ``event_id``, and tailing by sequence number."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from rtrec.config import EventsConfig
from rtrec.errors import InvalidInputError, StorageError
from rtrec.events._sql import (
    INVALID_ROW_ERROR,
    Limits,
    insert_sql,
    insert_valid_sql,
    kind_of,
    q,
    staging_sql,
    surely_valid,
    ts_expr,
)
from rtrec.events.catalog import CatalogMixin
from rtrec.events.connect import PSEUDO_FN, connect
from rtrec.events.files import file_format, read_json_lines, reader_sql
from rtrec.events.migrations import migrate
from rtrec.events.privacy import PrivacyMixin, Pseudonyms
from rtrec.events.records import RecordsMixin
from rtrec.events.rows import (
    IngestSummary,
    Pending,
    Rejected,
    StoredIds,
    check_columns,
    first_line,
    id_hashes,
    to_arrow,
    with_rejected,
)
from rtrec.events.schema import EVENT_COLUMNS, EVENT_INPUT_COLUMNS, EVENT_SCHEMA
from rtrec.events.validate import Validator

__all__ = ["EventLog", "IngestSummary", "Rejected"]


class EventLog(CatalogMixin, RecordsMixin, PrivacyMixin):
    """The rtrec database: events, rejected events, the item catalog and learner tables.

    Safe to share between threads: writes are serialised by a lock, reads use a fresh cursor.

    >>> log = EventLog.open(":memory:")
    >>> log.ingest([{"ts": 1700000000, "user_id": 1, "item_id": "a", "event_type": "click"}]).accepted
    1
    >>> [b.num_rows for b in log.tail(0)]
    [1]
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        path: str,
        events: EventsConfig | None = None,
        *,
        pseudonymize: Pseudonyms | None = None,
    ) -> None:
        self.path = path
        self.validator = Validator(events)
        c = self.validator.cfg
        self.pseudonymize = pseudonymize
        self.limits = Limits(
            c.max_future_s,
            self.validator.oldest_us,
            c.max_id_chars,
            c.max_json_chars,
            user_id_fn=PSEUDO_FN if pseudonymize is not None else None,
        )
        self._con = con
        self._use_pseudonyms(con)
        self._lock = threading.RLock()
        self._cursor_lock = threading.Lock()
        self._read_root = con.cursor()
        self._closed = False
        row = con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchall()
        self._last_seq = int(row[0][0]) if row else 0
        self._ids: StoredIds | None = None  # loaded by the first ingest (or warm_up)
        self._queue: list[Pending] = []
        self._queue_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        events: EventsConfig | None = None,
        *,
        read_only: bool = False,
        pseudonymize: Pseudonyms | None = None,
    ) -> EventLog:
        """Open (creating it and its parent directory when needed) and migrate a database.

        ``events`` sets what ingest accepts (``[events]`` in the config; defaults when None).
        ``read_only`` opens an existing database as it is, for reading beside no writer.
        ``pseudonymize`` maps each ingested user id to what is stored instead (see
        :class:`rtrec.privacy.Pseudonymizer`); rejected rows are then kept without the raw id.
        """
        spec = str(path)
        if spec != ":memory:":
            p = Path(path).expanduser()
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the directory of {p}: {exc}") from exc
            spec = str(p)
        con = connect(spec, events, read_only=read_only)
        if not read_only:
            migrate(con)
        return cls(con, spec, events, pseudonymize=pseudonymize)

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
        table, kept, rejected = to_arrow(data, self.validator)
        if order_by_ts:
            with self._lock:
                summary = self._ingest_arrow(table, source=source, order_by_ts=True, json_rows=False)
                if rejected:
                    self._store_rejected_rows(rejected, source=source)
            return with_rejected(summary, kept, rejected)
        job = Pending(table, source)
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
        return with_rejected(job.summary, kept, rejected)

    def warm_up(self) -> None:
        """Load the hashes of the stored event ids now; the first ingest would otherwise wait for them."""
        with self._lock:
            self._stored_ids()

    def _stored_ids(self) -> StoredIds:
        if self._ids is None:
            parts = [np.zeros(0, dtype=np.int64)]
            reader = self._con.sql("SELECT event_id FROM events").to_arrow_reader(1 << 16)
            for batch in reader:
                parts.append(id_hashes(batch.column(0).to_pylist()))
            self._ids = StoredIds(np.concatenate(parts))
        return self._ids

    def _commit_group(self, jobs: list[Pending]) -> None:
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
        h = id_hashes(col.to_pylist())
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
            raise StorageError(f"ingest into {self.path} failed: {first_line(exc)}") from exc
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
        fmt = file_format(p)
        source = p.name
        if items:
            n = self.upsert_items(p)
            return IngestSummary(accepted=n, source=source)
        if fmt == "jsonl":
            # In Python, line by line: each line is a row checked on its own, as over HTTP.
            return self.ingest(
                read_json_lines(p, self.validator.cfg.max_json_chars * 4), source=source, order_by_ts=order_by_ts
            )
        query = reader_sql(p, fmt)
        cur = self.cursor()
        summary = IngestSummary(source=source)
        try:
            try:
                schema = cur.sql(f"SELECT * FROM ({query}) LIMIT 0").to_arrow_table().schema
            except duckdb.Error as exc:
                raise InvalidInputError(f"cannot read {p} as {fmt}: {first_line(exc)}") from exc
            json_rows = fmt in ("jsonl", "json")
            check_columns(schema.names) if not json_rows else None
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
                        f"cannot read {p} as {fmt}: {first_line(exc)}",
                        hint=f"{summary.accepted} rows from earlier batches were stored",
                    ) from exc
        finally:
            cur.close()
        return summary

    @contextlib.contextmanager
    def _transaction(self, name: str, table: pa.Table, what: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run the block in one transaction with ``table`` registered as ``name``.

        Commits when the block ends, rolls back when it raises; a DuckDB failure becomes a
        :class:`StorageError` that says what was being written.
        """
        con = self._con
        con.register(name, table)
        try:
            with self._atomic(f"{what} into {self.path}"):
                yield con
        finally:
            con.unregister(name)

    @contextlib.contextmanager
    def _atomic(self, what: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run the block in one transaction on the write connection: commits when it ends, rolls
        back when it raises; a DuckDB failure becomes a :class:`StorageError` naming ``what``."""
        con = self._con
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except duckdb.Error as exc:
            raise StorageError(f"{what} failed: {first_line(exc)}") from exc

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
        h = id_hashes(eids)
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

    def tail(self, after_seq: int, *, max_rows: int | None = None, batch_size: int = 65536) -> Iterator[pa.RecordBatch]:
        """Events with ``seq > after_seq`` in sequence order, as record batches of ``EVENT_SCHEMA``."""
        if after_seq >= self._last_seq:
            return  # nothing past it (this log is the only writer): no query, which costs ~2 ms
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
            with contextlib.suppress(duckdb.Error):  # its connection may have been rewritten (compact)
                cur.close()

    def last_seq(self) -> int:
        """The highest sequence number stored (0 when the log is empty)."""
        return self._last_seq


def _conform(batch: pa.RecordBatch) -> pa.RecordBatch:
    if batch.schema.equals(EVENT_SCHEMA, check_metadata=False):
        return batch
    return pa.RecordBatch.from_arrays(
        [batch.column(i).cast(f.type) for i, f in enumerate(EVENT_SCHEMA)], schema=EVENT_SCHEMA
    )
