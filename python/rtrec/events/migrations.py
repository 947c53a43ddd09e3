"""Ordered, recorded schema migrations of the rtrec DuckDB database.

Each migration runs once, inside a transaction together with the row that records it in
``schema_migrations``. Append new migrations at the end; never edit or reorder old ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from rtrec.errors import StorageError


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "event log, rejected events and catalog",
        """
        CREATE TABLE events (
            seq BIGINT NOT NULL,
            event_id VARCHAR NOT NULL,
            ts TIMESTAMP NOT NULL,
            user_id VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            event_type VARCHAR NOT NULL,
            value DOUBLE,
            request_id VARCHAR,
            propensity DOUBLE,
            context VARCHAR,
            source VARCHAR
        );
        CREATE TABLE rejected_events (
            rejected_at TIMESTAMP NOT NULL,
            source VARCHAR,
            row_index BIGINT NOT NULL,
            reason VARCHAR NOT NULL,
            raw VARCHAR
        );
        CREATE TABLE items (
            item_id VARCHAR PRIMARY KEY,
            title VARCHAR,
            description VARCHAR,
            category VARCHAR,
            tags VARCHAR[],
            attrs VARCHAR,
            updated_at TIMESTAMP
        );
        """,
    ),
    Migration(
        2,
        "learner checkpoints, drift alarms and item text embeddings",
        """
        CREATE TABLE checkpoints (
            seq BIGINT,
            path VARCHAR,
            created_at TIMESTAMP,
            model_version BIGINT
        );
        CREATE TABLE drift_alarms (
            ts TIMESTAMP,
            seq BIGINT,
            detector VARCHAR,
            stat DOUBLE
        );
        CREATE TABLE item_embeddings (
            item_id VARCHAR,
            model VARCHAR,
            text_hash VARCHAR,
            dim INTEGER,
            embedding FLOAT[],
            updated_at TIMESTAMP,
            PRIMARY KEY (item_id, model)
        );
        """,
    ),
    Migration(
        3,
        "events the learner set aside, with the reason",
        """
        CREATE TABLE quarantined_events (
            seq BIGINT,
            reason VARCHAR,
            quarantined_at TIMESTAMP
        );
        """,
    ),
    Migration(
        4,
        "privacy: forget audit, its salt, retention runs; events cleaning flagged",
        """
        CREATE TABLE forget_audit (
            forgotten_at TIMESTAMP NOT NULL,
            id_hash VARCHAR NOT NULL,
            events BIGINT,
            rejected BIGINT,
            quarantined BIGINT,
            examples BIGINT,
            pending BIGINT,
            replay_rows BIGINT,
            checkpoints BIGINT,
            files BIGINT,
            compacted_at TIMESTAMP
        );
        CREATE TABLE privacy_salt AS
            SELECT md5(CAST(gen_random_uuid() AS VARCHAR)) || md5(CAST(gen_random_uuid() AS VARCHAR)) AS salt;
        CREATE TABLE retention_runs (
            ran_at TIMESTAMP NOT NULL,
            cutoff TIMESTAMP NOT NULL,
            events BIGINT,
            rejected BIGINT,
            quarantined BIGINT
        );
        CREATE TABLE flagged_events (
            seq BIGINT,
            reason VARCHAR,
            flagged_at TIMESTAMP
        );
        """,
    ),
)


def applied_versions(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Versions recorded in ``schema_migrations`` (empty for a new database)."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
    )
    return [int(r[0]) for r in con.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()]


def migrate(con: duckdb.DuckDBPyConnection, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply every migration not yet recorded, in order; return the versions applied now."""
    done = set(applied_versions(con))
    known = {m.version for m in migrations}
    newer = sorted(done - known)
    if newer:
        raise StorageError(
            f"the database has schema version {newer[-1]}, newer than this rtrec knows ({max(known)})",
            hint="upgrade rtrec, or point --home at another directory",
        )
    applied: list[int] = []
    for m in sorted(migrations, key=lambda m: m.version):
        if m.version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(m.sql)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, timezone('UTC', now()))",
                [m.version, m.name],
            )
            con.execute("COMMIT")
        except Exception as exc:
            con.execute("ROLLBACK")
            raise StorageError(f"schema migration {m.version} ({m.name}) failed: {exc}") from exc
        applied.append(m.version)
    return applied
