"""The log's record tables: rejected rows, quarantined events, drift alarms, checkpoints."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa

from rtrec.contracts import CheckpointInfo, DriftAlarm, StoredAlarm
from rtrec.errors import StorageError
from rtrec.events._sql import NOW_UTC
from rtrec.events.privacy import Pseudonyms
from rtrec.events.rows import dumps, first_line

__all__ = ["RecordsMixin"]


class RecordsMixin:
    """The part of :class:`~rtrec.events.EventLog` that keeps its record tables."""

    path: str
    pseudonymize: Pseudonyms | None
    _lock: threading.RLock
    _con: duckdb.DuckDBPyConnection

    def cursor(self) -> duckdb.DuckDBPyConnection:
        raise NotImplementedError

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

    def drift_alarms(self) -> list[StoredAlarm]:
        """Every recorded drift alarm, oldest first (``ts`` in epoch seconds)."""
        rows = self._table("SELECT epoch(ts) AS ts, seq, detector, stat FROM drift_alarms ORDER BY seq", None)
        return [
            StoredAlarm(ts=float(r["ts"]), seq=int(r["seq"]), detector=str(r["detector"]), stat=float(r["stat"]))
            for r in rows.to_pylist()
        ]

    def record_checkpoint(self, seq: int, path: str, model_version: int) -> None:
        """Note a checkpoint written (the file is what a restart reads; this table is a record)."""
        with self._lock:
            self._con.execute(
                f"INSERT INTO checkpoints (seq, path, created_at, model_version) VALUES (?, ?, {NOW_UTC}, ?)",
                [int(seq), path, int(model_version)],
            )

    def quarantine(self, rows: Sequence[tuple[int, str]]) -> None:
        """Record events (by ``seq``) that the learner set aside, each with the reason; they stay in the log."""
        self._record_seqs("quarantined_events", rows)

    def flag(self, rows: Sequence[tuple[int, str]]) -> None:
        """Record events (by ``seq``) that were learned but flagged by cleaning, each with the reason."""
        self._record_seqs("flagged_events", rows)

    def _record_seqs(self, table: str, rows: Sequence[tuple[int, str]]) -> None:
        if not rows:
            return
        t = pa.table(
            {"seq": pa.array([int(s) for s, _ in rows], pa.int64()), "reason": [str(r)[:2000] for _, r in rows]}
        )
        with self._lock:
            self._con.register("_rtrec_q", t)
            try:
                self._con.execute(f"INSERT INTO {table} SELECT seq, reason, {NOW_UTC} FROM _rtrec_q")
            except duckdb.Error as exc:
                raise StorageError(
                    f"recording {table.replace('_', ' ')} in {self.path} failed: {first_line(exc)}"
                ) from exc
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

    def _store_rejected_rows(self, rejected: list[tuple[int, str, str]], *, source: str) -> None:
        """Record rows refused before Arrow: (input index, reason, raw JSON text)."""
        reasons, raws = self._redact([r for _, r, _ in rejected], [raw for *_, raw in rejected])
        rej = pa.table(
            {
                "row_index": pa.array([i for i, _, _ in rejected], pa.int64()),
                "reason": pa.array(reasons, pa.string()),
                "raw": pa.array(raws, pa.string()),
            }
        )
        self._con.register("_rtrec_rej", rej)
        try:
            self._con.execute(
                f"INSERT INTO rejected_events SELECT {NOW_UTC}, ?, row_index, reason, raw FROM _rtrec_rej", [source]
            )
        except duckdb.Error as exc:
            raise StorageError(f"recording rejected rows in {self.path} failed: {first_line(exc)}") from exc
        finally:
            self._con.unregister("_rtrec_rej")

    def _store_rejected(
        self, table: pa.Table, bad: list[tuple[Any, Any]], *, source: str, json_rows: bool, index_offset: int
    ) -> None:
        idx = [int(i) for i, _ in bad]
        rows = table.take(pa.array(idx, pa.int64())).to_pylist()
        reasons, raws = self._redact(
            [str(r) for _, r in bad], [str(r["line"]) if json_rows else dumps(r) for r in rows]
        )
        rej = pa.table(
            {
                "row_index": pa.array([index_offset + i for i in idx], pa.int64()),
                "reason": pa.array(reasons, pa.string()),
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

    def _redact(self, reasons: list[str], raws: list[str | None]) -> tuple[list[str], list[str | None]]:
        """With pseudonymous ids, what is kept of rejected rows: the row with its user id replaced
        by the pseudonym (no raw copy when it is not a JSON object), and no reason that quotes it."""
        pseudo = self.pseudonymize
        if pseudo is None:
            return reasons, raws
        hidden = "user_id: malformed value (not shown: user ids are pseudonymized)"
        reasons = [hidden if r.startswith("user_id: malformed") else r for r in reasons]
        return reasons, [pseudo.redact_row(t) for t in raws]

    # -- catalog -------------------------------------------------------------------------------

    def count_items(self) -> int:
        return int(self._scalar("SELECT count(*) FROM items"))

    def last_checkpoint(self) -> CheckpointInfo | None:
        """The newest checkpoint recorded: seq, path, created_at (epoch seconds), model_version."""
        cur = self.cursor()
        try:
            row = cur.execute(
                "SELECT seq, path, epoch(created_at), model_version FROM checkpoints ORDER BY seq DESC LIMIT 1"
            ).fetchall()
        finally:
            cur.close()
        if not row:
            return None
        seq, path, created, version = row[0]
        return CheckpointInfo(seq=int(seq), path=str(path), created_at=float(created), model_version=int(version))

    def recent_top_items(self, k: int = 10, window: int = 10_000) -> list[str]:
        """The ``k`` items with the most engaging events among the last ``window`` events."""
        cur = self.cursor()
        try:
            rows = cur.execute(
                "SELECT item_id FROM events WHERE event_type NOT IN ('impression', 'skip', 'dismiss') "
                "AND seq > (SELECT coalesce(max(seq), 0) - ? FROM events) "
                "GROUP BY item_id ORDER BY count(*) DESC, item_id LIMIT ?",
                [int(window), int(k)],
            ).fetchall()
        finally:
            cur.close()
        return [str(r[0]) for r in rows]
