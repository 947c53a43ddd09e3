"""The log's part of privacy: deleting a user's rows, the forget audit, and retention."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, TypedDict

import duckdb
import numpy as np
import pyarrow as pa
from duckdb.func import PythonUDFType

from rtrec.errors import StorageError
from rtrec.events._sql import NOW_UTC, lit, q
from rtrec.events.connect import PSEUDO_FN, connect
from rtrec.events.rows import StoredIds, first_line, id_hashes
from rtrec.events.validate import Validator

__all__ = ["MIN_TEXT_MATCH", "Dropped", "Erased", "PrivacyMixin", "Pseudonyms"]

#: Ids at least this long are also matched in free text (a rejected row's raw text and reason,
#: inbox lines that are not JSON); shorter ones only in a row's ``user_id`` field.
MIN_TEXT_MATCH = 8


class Pseudonyms(Protocol):
    """What the log needs of a pseudonymous-id mapping (:class:`rtrec.privacy.Pseudonymizer`)."""

    def __call__(self, user_id: str) -> str: ...
    def column(self, ids: pa.Array) -> pa.Array: ...
    def redact_row(self, text: str | None) -> str | None: ...


class Erased(TypedDict):
    events: int  # rows deleted from ``events``
    learned_events: int  # of those, at or before the learner's sequence number
    rejected: int  # rows of ``rejected_events`` that named the user
    quarantined: int  # rows of ``quarantined_events`` and ``flagged_events`` about the deleted events


class Dropped(TypedDict):
    cutoff: float  # epoch seconds: events before this were dropped
    events: int
    rejected: int
    quarantined: int


class PrivacyMixin:
    """The part of :class:`~rtrec.events.EventLog` that deletes rows for privacy."""

    path: str
    pseudonymize: Pseudonyms | None
    validator: Validator
    _lock: threading.RLock
    _cursor_lock: threading.Lock
    _con: duckdb.DuckDBPyConnection
    _read_root: duckdb.DuckDBPyConnection
    _ids: StoredIds | None

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    def _atomic(self, what: str) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        raise NotImplementedError

    def _use_pseudonyms(self, con: duckdb.DuckDBPyConnection) -> None:
        if self.pseudonymize is not None:
            con.create_function(
                PSEUDO_FN,
                self.pseudonymize.column,
                ["VARCHAR"],
                "VARCHAR",
                type=PythonUDFType.ARROW,
                side_effects=False,
            )

    def compact(self) -> None:
        """Rewrite the database file, so that deleted rows leave no bytes behind in free pages.

        The tables are copied into a new file, which then replaces the old one; the connection
        is reopened on it. Holds the write lock throughout: ingest waits, and a cursor in use
        by another thread fails (its caller retries), so run it where that is acceptable.
        """
        if self.path == ":memory:":
            return
        tmp = Path(self.path + ".compact.tmp")
        with self._lock, self._cursor_lock:
            for leftover in (tmp, Path(str(tmp) + ".wal")):
                leftover.unlink(missing_ok=True)
            con = self._con
            try:
                con.execute("UPDATE forget_audit SET compacted_at = " + NOW_UTC + " WHERE compacted_at IS NULL")
                con.execute("CHECKPOINT")
                db = con.execute("SELECT current_database()").fetchall()[0][0]
                con.execute(f"ATTACH {lit(str(tmp))} AS rtrec_compact")
                try:
                    con.execute(f"COPY FROM DATABASE {q(db)} TO rtrec_compact")
                finally:
                    con.execute("DETACH rtrec_compact")
            except duckdb.Error as exc:
                tmp.unlink(missing_ok=True)
                raise StorageError(f"rewriting {self.path} failed: {first_line(exc)}") from exc
            self._read_root.close()
            con.close()
            os.replace(tmp, self.path)
            Path(self.path + ".wal").unlink(missing_ok=True)
            self._con = connect(self.path, self.validator.cfg, read_only=False)
            self._use_pseudonyms(self._con)
            self._read_root = self._con.cursor()

    def forget_users(self, user_ids: Sequence[str], learned_seq: int) -> Erased:
        """Delete every event of ``user_ids``, every rejected row whose text names one of them,
        and the quarantine and flag records of the deleted events, in one transaction. The
        deleted event ids may be ingested again, as new events. The deleted rows' bytes stay in
        the file's free pages until :meth:`compact` rewrites it."""
        ids = [str(u) for u in user_ids if u]
        if not ids:
            return Erased(events=0, learned_events=0, rejected=0, quarantined=0)
        marks = ", ".join("?" for _ in ids)
        # A rejected row names the user when its user_id field is the id; its text, when the id is
        # long enough that its bytes mean the id (a short id such as "2" would match any row).
        field = "(CASE WHEN json_valid(raw) THEN json_extract_string(raw, '$.user_id') END)"
        text = "contains(coalesce(raw, ''), ?) OR contains(reason, ?)"
        named = " OR ".join(f"{field} = ? OR (length(?) >= {MIN_TEXT_MATCH} AND ({text}))" for _ in ids)
        with self._lock, self._atomic(f"deleting a user's rows from {self.path}") as con:
            gone, q = self._delete_events(con, f"user_id IN ({marks})", ids)
            rej = con.execute(
                f"DELETE FROM rejected_events WHERE {named} RETURNING row_index",
                [x for i in ids for x in (i, i, i, i)],
            ).fetchall()
        self._forget_ids(gone)
        seqs = gone.column("seq").to_numpy() if gone.num_rows else np.zeros(0, np.int64)
        return Erased(
            events=gone.num_rows, learned_events=int((seqs <= learned_seq).sum()), rejected=len(rej), quarantined=q
        )

    def salt(self) -> str:
        """This home's salt for the forget audit's id hashes."""
        return str(self._scalar("SELECT salt FROM privacy_salt"))

    def record_forget(self, id_hash: str, counts: dict[str, int]) -> None:
        """Note in ``forget_audit`` that a user was forgotten: the time, the salted hash, the counts."""
        cols = ("events", "rejected", "quarantined", "examples", "pending", "replay_rows", "checkpoints", "files")
        with self._lock:
            self._con.execute(
                f"INSERT INTO forget_audit (forgotten_at, id_hash, {', '.join(cols)}) "
                f"VALUES ({NOW_UTC}, ?, {', '.join('?' for _ in cols)})",
                [id_hash, *(int(counts.get(c, 0)) for c in cols)],
            )

    def needs_compaction(self) -> float | None:
        """Epoch seconds of the oldest forget not yet compacted away (None: none)."""
        got = self._scalar("SELECT epoch(min(forgotten_at)) FROM forget_audit WHERE compacted_at IS NULL")
        return None if got is None else float(got)

    def drop_before(self, cutoff_s: float, learned_seq: int) -> Dropped:
        """Retention: delete events older than ``cutoff_s`` (epoch seconds) that the learner has
        learned (``seq <= learned_seq``), with their quarantine records, and rejected rows older
        than the cutoff; record the run in ``retention_runs``."""
        cut = "make_timestamp(CAST(? * 1e6 AS BIGINT))"
        with self._lock, self._atomic(f"retention on {self.path}") as con:
            gone, q = self._delete_events(con, f"ts < {cut} AND seq <= ?", [cutoff_s, int(learned_seq)])
            rej = con.execute(
                f"DELETE FROM rejected_events WHERE rejected_at < {cut} RETURNING 1", [cutoff_s]
            ).fetchall()
            con.execute(
                f"INSERT INTO retention_runs VALUES ({NOW_UTC}, {cut}, ?, ?, ?)", [cutoff_s, gone.num_rows, len(rej), q]
            )
        self._forget_ids(gone)
        return Dropped(cutoff=cutoff_s, events=gone.num_rows, rejected=len(rej), quarantined=q)

    @staticmethod
    def _delete_events(con: duckdb.DuckDBPyConnection, where: str, params: list[Any]) -> tuple[pa.Table, int]:
        """Delete the events matching ``where`` and the quarantine and flag records about them:
        the deleted events' ``seq`` and ``event_id``, and how many records went with them."""
        rel = con.sql(f"DELETE FROM events WHERE {where} RETURNING seq, event_id", params=params)
        assert rel is not None
        gone = rel.to_arrow_table()  # a relation, so that the rows come back as Arrow without a copy
        con.register("_rtrec_gone", pa.table({"seq": gone.column("seq")}))
        try:
            n = 0
            for table in ("quarantined_events", "flagged_events"):
                sql = f"DELETE FROM {table} WHERE seq IN (SELECT seq FROM _rtrec_gone) RETURNING seq"
                n += len(con.execute(sql).fetchall())
        finally:
            con.unregister("_rtrec_gone")
        return gone, n

    def _forget_ids(self, gone: pa.Table) -> None:
        """The deleted events' ids may come again, as new events."""
        if self._ids is not None and gone.num_rows:
            self._ids.discard(id_hashes(gone.column("event_id").to_pylist()))
