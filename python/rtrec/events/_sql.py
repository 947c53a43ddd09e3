"""SQL that validates and normalises raw event rows inside DuckDB (one pass, vectorised)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa

from rtrec.events.schema import EVENT_INPUT_COLUMNS, EVENT_TYPES

# Integer epochs at or above this magnitude are milliseconds, below it seconds: 1e11 seconds is
# the year 5138, 1e11 milliseconds is March 1973.
MS_THRESHOLD = 1e11
# Anything at or above this magnitude is out of range either way (1e14 ms is the year 5138).
EPOCH_LIMIT = 1e14

NOW_UTC = "timezone('UTC', now())"
_SCALAR_JSON = "('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE')"
_KNOWN_KEYS = None  # set below, once the column names are imported


def q(name: str) -> str:
    """Quote an identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(text: str) -> str:
    """Quote a string literal."""
    return "'" + text.replace("'", "''") + "'"


def kind_of(tp: pa.DataType) -> str:
    """Classify an Arrow type for normalisation."""
    if pa.types.is_dictionary(tp):
        return kind_of(tp.value_type)
    if pa.types.is_string(tp) or pa.types.is_large_string(tp) or pa.types.is_string_view(tp):
        return "str"
    if pa.types.is_integer(tp):
        return "int"
    if pa.types.is_floating(tp) or pa.types.is_decimal(tp):
        return "float"
    if pa.types.is_timestamp(tp):
        return "tstz" if tp.tz else "ts"
    if pa.types.is_date(tp):
        return "ts"
    if pa.types.is_null(tp):
        return "null"
    if pa.types.is_struct(tp) or pa.types.is_map(tp):
        return "struct"
    return "other"


def _raw_text(col: str, kind: str) -> str:
    if kind == "str":
        return col
    if kind == "json":
        return f"json_extract_string({col}, '$')"
    return f"CAST({col} AS VARCHAR)"


def _id_expr(col: str, kind: str) -> tuple[str, str]:
    """(normalised text, malformed?) for an identifier column."""
    if kind in ("missing", "null"):
        return "NULL::VARCHAR", "false"
    if kind == "str":
        return col, f"(trim({col}) = '')"
    if kind == "int":
        return f"CAST({col} AS VARCHAR)", "false"
    if kind == "float":
        v = (
            f"CASE WHEN isfinite({col}) AND {col} = trunc({col}) AND abs({col}) < 9e15 "
            f"THEN CAST(CAST({col} AS BIGINT) AS VARCHAR) END"
        )
        return v, f"({col} IS NOT NULL AND ({v}) IS NULL)"
    if kind == "json":
        v = f"CASE WHEN json_type({col}) IN ('VARCHAR', 'BIGINT', 'UBIGINT') THEN json_extract_string({col}, '$') END"
        return v, f"(json_type({col}) <> 'NULL' AND (({v}) IS NULL OR trim({v}) = ''))"
    return "NULL::VARCHAR", f"({col} IS NOT NULL)"


def _epoch_expr(d: str) -> str:
    """Timestamp from a DOUBLE holding epoch seconds or milliseconds (NULL when out of range)."""
    return (
        f"CASE WHEN NOT isfinite({d}) THEN NULL "
        f"WHEN abs({d}) < {MS_THRESHOLD} THEN make_timestamp(CAST(round({d} * 1e6) AS BIGINT)) "
        f"WHEN abs({d}) < {EPOCH_LIMIT} THEN make_timestamp(CAST(round({d} * 1e3) AS BIGINT)) END"
    )


def _ts_from_text(s: str) -> str:
    d = f"TRY_CAST({s} AS DOUBLE)"
    return f"CASE WHEN {d} IS NOT NULL THEN {_epoch_expr(d)} ELSE timezone('UTC', TRY_CAST({s} AS TIMESTAMPTZ)) END"


def ts_expr(col: str, kind: str) -> tuple[str, str]:
    """(UTC timestamp, malformed?) for the ``ts`` column."""
    if kind in ("missing", "null"):
        return "NULL::TIMESTAMP", "false"
    if kind == "ts":
        return f"CAST({col} AS TIMESTAMP)", "false"
    if kind == "tstz":
        return f"timezone('UTC', {col})", "false"
    if kind in ("int", "float"):
        v = _epoch_expr(f"CAST({col} AS DOUBLE)")
    elif kind == "str":
        v = _ts_from_text(col)
    elif kind == "json":
        s = f"CASE WHEN json_type({col}) IN {_SCALAR_JSON} THEN json_extract_string({col}, '$') END"
        v = _ts_from_text(f"({s})")
        return v, f"(json_type({col}) <> 'NULL' AND ({v}) IS NULL)"
    else:
        return "NULL::TIMESTAMP", f"({col} IS NOT NULL)"
    return v, f"({col} IS NOT NULL AND ({v}) IS NULL)"


def _num_expr(col: str, kind: str) -> tuple[str, str]:
    """(DOUBLE, malformed?) for an optional numeric column."""
    if kind in ("missing", "null"):
        return "NULL::DOUBLE", "false"
    if kind in ("int", "float"):
        return f"CAST({col} AS DOUBLE)", "false"
    if kind == "str":
        v = f"TRY_CAST({col} AS DOUBLE)"
        return v, f"({col} IS NOT NULL AND trim({col}) <> '' AND ({v}) IS NULL)"
    if kind == "json":
        v = (
            f"CASE WHEN json_type({col}) IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE') "
            f"THEN TRY_CAST(json_extract_string({col}, '$') AS DOUBLE) END"
        )
        return v, f"(json_type({col}) <> 'NULL' AND ({v}) IS NULL)"
    return "NULL::DOUBLE", f"({col} IS NOT NULL)"


def _context_expr(col: str, kind: str) -> tuple[str, str]:
    """(JSON object text, malformed?) for ``context``."""
    if kind in ("missing", "null"):
        return "NULL::VARCHAR", "false"
    if kind == "struct":
        return f"CAST(to_json({col}) AS VARCHAR)", "false"
    if kind == "str":
        ok = f"(json_valid({col}) AND json_type(TRY_CAST({col} AS JSON)) = 'OBJECT')"
        return f"CASE WHEN trim({col}) = '' THEN NULL WHEN {ok} THEN {col} END", f"(trim({col}) <> '' AND NOT {ok})"
    if kind == "json":
        # An object, or a string holding a JSON object.
        inner = f"json_extract_string({col}, '$')"
        inner_ok = f"(json_valid({inner}) AND json_type(TRY_CAST({inner} AS JSON)) = 'OBJECT')"
        v = (
            f"CASE WHEN json_type({col}) = 'OBJECT' THEN CAST({col} AS VARCHAR) "
            f"WHEN json_type({col}) = 'VARCHAR' AND {inner_ok} THEN {inner} END"
        )
        return v, f"(json_type({col}) <> 'NULL' AND ({v}) IS NULL)"
    return "NULL::VARCHAR", f"({col} IS NOT NULL)"


_TYPES_TEXT = ", ".join(EVENT_TYPES)
_KNOWN_KEYS = ", ".join(lit(c) for c in (*EVENT_INPUT_COLUMNS, "seq"))
_UNKNOWN_KEYS = f"list_filter(json_keys(_j), lambda x: x NOT IN ({_KNOWN_KEYS}))"
_TYPES_SQL = ", ".join(lit(t) for t in EVENT_TYPES)


def _clip(expr: str) -> str:
    return f"left({expr}, 80)"


@dataclass(frozen=True)
class Limits:
    """The bounds of :class:`rtrec.config.EventsConfig` that the SQL checks enforce."""

    max_future_s: float = 86_400.0
    oldest_us: int = 0
    max_id_chars: int = 512
    max_json_chars: int = 65_536
    user_id_fn: str | None = None  # SQL function that maps each stored user id (pseudonyms)


def _normalise(
    source: str, kinds: dict[str, str], json_rows: bool, limits: Limits
) -> tuple[str, dict[str, str], list[tuple[str, str]]]:
    """(FROM clause, normalised expression per event column, [(condition, reason message)])."""
    cols: dict[str, str] = {}
    if json_rows:
        base = f"(SELECT _idx, TRY_CAST(line AS JSON) AS _j FROM {source})"
        for name in EVENT_INPUT_COLUMNS:
            cols[name] = f"(_j -> {lit('$.' + name)})"
        kinds = dict.fromkeys(EVENT_INPUT_COLUMNS, "json")
    else:
        base = f"{source} AS _src"
        for name in EVENT_INPUT_COLUMNS:
            cols[name] = f"_src.{q(name)}"
    k = {name: kinds.get(name, "missing") for name in EVENT_INPUT_COLUMNS}

    eid, eid_bad = _id_expr(cols["event_id"], k["event_id"])
    ts, ts_bad = ts_expr(cols["ts"], k["ts"])
    uid, uid_bad = _id_expr(cols["user_id"], k["user_id"])
    iid, iid_bad = _id_expr(cols["item_id"], k["item_id"])
    et, et_bad = _id_expr(cols["event_type"], k["event_type"])
    val, val_bad = _num_expr(cols["value"], k["value"])
    rid, rid_bad = _id_expr(cols["request_id"], k["request_id"])
    prop, prop_bad = _num_expr(cols["propensity"], k["propensity"])
    ctx, ctx_bad = _context_expr(cols["context"], k["context"])

    eid_bad, ts_bad, uid_bad, iid_bad, et_bad, val_bad, rid_bad, prop_bad, ctx_bad = (
        f"coalesce({b}, false)"
        for b in (eid_bad, ts_bad, uid_bad, iid_bad, et_bad, val_bad, rid_bad, prop_bad, ctx_bad)
    )

    def raw(name: str) -> str:
        if k[name] == "missing":
            return "''"
        return _clip(_raw_text(cols[name], k[name]))

    checks: list[tuple[str, str]] = []
    if json_rows:
        checks += [
            ("_j IS NULL", "'row: not valid JSON'"),
            ("json_type(_j) <> 'OBJECT'", "'row: expected a JSON object, got ' || lower(json_type(_j))"),
            (
                f"len({_UNKNOWN_KEYS}) > 0",
                f"'row: unknown field ''' || {_UNKNOWN_KEYS}[1] || ''''",
            ),
        ]
    n_id = int(limits.max_id_chars)
    too_long = f"' characters, over the limit of {n_id} (events.max_id_chars)'"
    future = f"({NOW_UTC} + INTERVAL {int(limits.max_future_s * 1e6)} MICROSECOND)"
    oldest = f"make_timestamp({int(limits.oldest_us)})"
    checks += [
        (eid_bad, f"'event_id: malformed value ''' || {raw('event_id')} || ''' (expected a non-empty string)'"),
        (f"length({eid}) > {n_id}", f"'event_id: ' || length({eid}) || {too_long}"),
        (f"({ts}) IS NULL AND NOT {ts_bad}", "'ts: missing'"),
        (
            f"({ts}) > {future}",
            f"'ts: ' || CAST({ts} AS VARCHAR) || ' is more than {limits.max_future_s:g} s in the future "
            "of the daemon''s clock (events.max_future_s)'",
        ),
        (
            f"({ts}) < {oldest}",
            f"'ts: ' || CAST({ts} AS VARCHAR) || ' is before the oldest accepted time (events.oldest)'",
        ),
        (
            ts_bad,
            f"'ts: malformed value ''' || {raw('ts')} || "
            "''' (expected a timestamp or integer epoch seconds/milliseconds)'",
        ),
    ]
    for name, v, bad in (("user_id", uid, uid_bad), ("item_id", iid, iid_bad), ("event_type", et, et_bad)):
        checks.append((f"({v}) IS NULL AND NOT {bad}", f"'{name}: missing'"))
        checks.append((bad, f"'{name}: malformed value ''' || {raw(name)} || ''' (expected a non-empty string)'"))
        checks.append((f"length({v}) > {n_id}", f"'{name}: ' || length({v}) || {too_long}"))
    checks += [
        (
            f"({et}) NOT IN ({_TYPES_SQL})",
            f"'event_type: unknown value ''' || {_clip(et)} || ''' (expected one of {_TYPES_TEXT})'",
        ),
        (val_bad, f"'value: malformed value ''' || {raw('value')} || ''' (expected a number)'"),
        (f"NOT isfinite({val})", f"'value: non-finite number ' || CAST({val} AS VARCHAR)"),
        (f"({et}) = 'rating' AND ({val}) IS NULL", "'value: missing (rating events need the rating as value)'"),
        (rid_bad, f"'request_id: malformed value ''' || {raw('request_id')} || ''' (expected a non-empty string)'"),
        (f"length({rid}) > {n_id}", f"'request_id: ' || length({rid}) || {too_long}"),
        (prop_bad, f"'propensity: malformed value ''' || {raw('propensity')} || ''' (expected a number)'"),
        (
            f"NOT isfinite({prop}) OR ({prop}) <= 0 OR ({prop}) > 1",
            f"'propensity: ' || CAST({prop} AS VARCHAR) || ' is outside (0, 1]'",
        ),
        (ctx_bad, f"'context: malformed value ''' || {raw('context')} || ''' (expected a JSON object)'"),
        (
            f"length({ctx}) > {int(limits.max_json_chars)}",
            f"'context: longer than {int(limits.max_json_chars)} characters (events.max_json_chars)'",
        ),
    ]
    values = {
        "event_id": f"coalesce({eid}, CAST(uuid() AS VARCHAR))",
        "ts": ts,
        "user_id": f"{limits.user_id_fn}({uid})" if limits.user_id_fn else uid,
        "item_id": iid,
        "event_type": et,
        "value": val,
        "request_id": rid,
        "propensity": prop,
        "context": ctx,
    }
    return base, values, checks


def staging_sql(source: str, kinds: dict[str, str], *, json_rows: bool = False, limits: Limits | None = None) -> str:
    """A SELECT over ``source`` giving ``_idx``, the normalised event columns and ``reason``.

    ``kinds`` maps each input column to :func:`kind_of`'s class (absent columns are missing).
    With ``json_rows`` the source has one column ``line`` with a JSON object per row.
    """
    base, values, checks = _normalise(source, kinds, json_rows, limits or Limits())
    reason = "CASE " + " ".join(f"WHEN {cond} THEN {msg}" for cond, msg in checks) + " END"
    selected = ", ".join(f"{expr} AS {name}" for name, expr in values.items())
    return f"SELECT _idx, {selected}, {reason} AS reason FROM {base}"


#: The message of the error :func:`insert_valid_sql` raises when a row is invalid.
INVALID_ROW_ERROR = "rtrec: invalid event row"


def insert_valid_sql(source: str, kinds: dict[str, str], first_seq: int, limits: Limits | None = None) -> str:
    """One INSERT of every row of ``source`` into ``events``, numbered ``first_seq + _idx``.

    The same normalisation and conditions as :func:`staging_sql`, but the statement fails with
    :data:`INVALID_ROW_ERROR` as soon as any row has a reason, so the reasons need not be built
    (their messages make the staging query several times slower to plan). Takes the source
    name as parameter ``?``. The caller checks duplicates first.
    """
    base, values, checks = _normalise(source, kinds, False, limits or Limits())
    any_bad = " OR ".join(f"({cond})" for cond, _ in checks)
    cols = ", ".join(values)
    selected = ", ".join(values.values())
    return (
        f"INSERT INTO events (seq, {cols}, source) SELECT {int(first_seq)} + _idx, {selected}, ? FROM {base} "
        f"WHERE CASE WHEN {any_bad} THEN error({lit(INVALID_ROW_ERROR)}) ELSE true END"
    )


def insert_sql(source: str, kinds: dict[str, str], first_seq: int, limits: Limits | None = None) -> str:
    """One INSERT of every row of ``source`` (normalised as :func:`staging_sql` does), checking nothing.

    Only for tables that :func:`surely_valid` accepts and without duplicates. Takes the source
    name as parameter ``?``.
    """
    base, values, _ = _normalise(source, kinds, False, limits or Limits())
    return (
        f"INSERT INTO events (seq, {', '.join(values)}, source) "
        f"SELECT {int(first_seq)} + _idx, {', '.join(values.values())}, ? FROM {base}"
    )


# The first character of an identifier that DuckDB's trim() cannot remove: printable ASCII
# other than the space. (DuckDB trims the space and Unicode spaces, not tabs: matching its set
# exactly is not needed, since an identifier that fails this test only takes the slow path.)
_SOLID_START = "^[!-~]"


def surely_valid(table: pa.Table, limits: Limits | None = None) -> bool:
    """True only if :func:`staging_sql` gives every row of ``table`` a NULL reason; False when unsure.

    A conservative mirror of the checks above for the common shapes (string identifiers,
    numeric epochs, no context), vectorised in Arrow and numpy: it costs a fraction of a
    millisecond per thousand rows where planning the checks in DuckDB costs several. A False
    only means that the rows go through the checks in SQL.
    """
    import numpy as np
    import pyarrow.compute as pc

    def typ(name: str) -> pa.DataType | None:
        return table.schema.field(name).type if name in table.column_names else None

    def solid(name: str, *, nullable: bool) -> bool:
        tp = typ(name)
        if tp is None or pa.types.is_null(tp):
            return nullable
        if not (pa.types.is_string(tp) or pa.types.is_large_string(tp)):
            return False
        col = table.column(name)
        if col.null_count and not nullable:
            return False
        if bool(pc.any(pc.greater(pc.utf8_length(col), lim.max_id_chars)).as_py()):
            return False
        return bool(pc.all(pc.match_substring_regex(col, _SOLID_START), skip_nulls=True).as_py() is not False)

    def numbers(name: str) -> np.ndarray | None:
        tp = typ(name)
        if tp is None or pa.types.is_null(tp):
            return np.zeros(table.num_rows)[:0]
        if not (pa.types.is_integer(tp) or pa.types.is_floating(tp)) or pa.types.is_float16(tp):
            return None
        col = table.column(name)
        return col.drop_null().to_numpy().astype(np.float64)

    lim = limits or Limits()
    if table.num_rows == 0:
        return True
    for name in ("event_id", "user_id", "item_id", "event_type"):
        if not solid(name, nullable=name == "event_id"):
            return False
    if not solid("request_id", nullable=True):
        return False
    ctx = typ("context")
    if ctx is not None and (not pa.types.is_null(ctx) and table.column("context").null_count != table.num_rows):
        return False
    et = table.column("event_type")
    if not pc.all(pc.is_in(et, value_set=pa.array(EVENT_TYPES))).as_py():
        return False
    ts_type = typ("ts")
    if ts_type is None or table.column("ts").null_count:
        return False
    if pa.types.is_timestamp(ts_type) and ts_type.unit == "us":  # epoch microseconds, zone or not
        us = table.column("ts").cast(pa.int64()).to_numpy().astype(np.float64)
    else:
        if pa.types.is_timestamp(ts_type) or pa.types.is_date(ts_type):
            return False  # other units and zones: the range check runs in SQL
        ts = numbers("ts")
        if ts is None or not bool(np.all(np.abs(ts) < EPOCH_LIMIT)):  # NaN compares False
            return False
        us = np.where(np.abs(ts) < MS_THRESHOLD, ts * 1e6, ts * 1e3)
    # A minute's margin at each bound: a row that close to one gets the exact check in SQL.
    latest = time.time() * 1e6 + lim.max_future_s * 1e6 - 6e7
    if not bool(np.all((us >= lim.oldest_us + 6e7) & (us <= latest))):
        return False
    value = numbers("value")
    if value is None or not bool(np.all(np.isfinite(value))):
        return False
    if "rating" in et.unique().to_pylist():
        is_rating = pc.equal(et, "rating")
        if typ("value") is None or table.column("value").filter(is_rating).null_count:
            return False
    prop = numbers("propensity")
    return prop is not None and bool(np.all((prop > 0) & (prop <= 1)))
