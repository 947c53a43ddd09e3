"""Opening a connection to the rtrec database."""

from __future__ import annotations

import duckdb

from rtrec.config import EventsConfig
from rtrec.errors import InvalidInputError, StorageError
from rtrec.events._sql import lit

__all__ = ["PSEUDO_FN", "connect"]

#: The SQL function that maps ingested user ids to their pseudonyms (when enabled).
PSEUDO_FN = "rtrec_pseudonym"


def connect(spec: str, events: EventsConfig | None, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A connection to the database at ``spec``, in UTC and within ``events.duckdb_memory_limit``."""
    try:
        con = duckdb.connect(spec, read_only=read_only)
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
        raise InvalidInputError(f"events.duckdb_memory_limit: {limit!r} is not a DuckDB memory size ({exc})") from None
    return con
