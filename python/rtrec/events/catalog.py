"""The item catalog of the log: upserts checked row by row or as a table, and reads."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from rtrec.errors import InvalidInputError
from rtrec.events._sql import NOW_UTC, kind_of, lit, q, ts_expr
from rtrec.events.files import file_format, reader_sql
from rtrec.events.rows import Rejected, first_line, items_from_rows
from rtrec.events.schema import ITEM_COLUMNS, ITEM_SCHEMA
from rtrec.events.validate import Validator

__all__ = ["CatalogMixin"]


class CatalogMixin:
    """The part of :class:`~rtrec.events.EventLog` that keeps the catalog."""

    _lock: threading.RLock
    validator: Validator

    def cursor(self) -> duckdb.DuckDBPyConnection:
        raise NotImplementedError

    def _transaction(
        self, name: str, table: pa.Table, what: str
    ) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]:
        raise NotImplementedError

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
            fmt = file_format(p)
            if fmt in ("jsonl", "json"):
                sql = f"SELECT * FROM read_json({lit(str(p))}, format = 'auto')"
            elif fmt == "csv":
                sql = f"SELECT * FROM read_csv({lit(str(p))}, header = true)"
            else:
                sql = reader_sql(p, fmt)
            cur = self.cursor()
            try:
                table = cur.sql(sql).to_arrow_table()
            except duckdb.Error as exc:
                raise InvalidInputError(f"cannot read {p} as {fmt}: {first_line(exc)}") from exc
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
            table = items_from_rows(good)
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

    def items(self) -> pa.Table:
        """The catalog, ordered by item_id, as ``ITEM_SCHEMA``."""
        cur = self.cursor()
        try:
            table = cur.sql(f"SELECT {', '.join(ITEM_COLUMNS)} FROM items ORDER BY item_id").to_arrow_table()
        finally:
            cur.close()
        return table.cast(ITEM_SCHEMA)
