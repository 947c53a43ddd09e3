"""Reading a daemon's stats: over HTTP from a running one, or from the home of a stopped one.

Standard library only (urllib), so that ``rtrec inspect`` needs no HTTP client package.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rtrec.config import Config
from rtrec.errors import RtrecError, StorageError

RUNTIME_FILE = "serve.json"


def get_json(url: str, token: str | None = None, timeout: float = 5.0) -> Any:
    """GET ``url`` and decode JSON; raise :class:`StorageError` with the cause when it fails."""
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        hint = "pass --token or set RTREC_TOKEN" if exc.code == 401 else None
        raise StorageError(f"{url} answered {exc.code}: {detail}", hint=hint) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StorageError(
            f"cannot reach the daemon at {url}: {reason}", hint="start it with `rtrec serve`, or pass --url or --home"
        ) from None


def running_url(home: Path) -> str | None:
    """The URL of the daemon serving ``home``, when its runtime file names a live process."""
    path = home / RUNTIME_FILE
    try:
        info = json.loads(path.read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by someone else
    url = info.get("url")
    return str(url) if url else None


def resolve_source(cfg: Config, *, url: str | None, token: str | None, explicit_home: bool) -> Callable[[], Any]:
    """A function returning fresh stats: from ``url``, the daemon running on the home, or the home's files."""
    if url is None:
        url = running_url(cfg.home)
        if url is None and explicit_home:
            return lambda: offline_stats(cfg)
        if url is None:
            url = f"http://{cfg.serve.host}:{cfg.serve.port}"
    stats_url = url.rstrip("/") + "/v1/stats"
    return lambda: get_json(stats_url, token)


def offline_stats(cfg: Config) -> dict[str, Any]:
    """The stats a stopped daemon would show, read from its database and newest checkpoint."""
    from rtrec.jsonable import jsonable
    from rtrec.serve.checkpoints import checkpoint_files
    from rtrec.serve.status import current_quality

    db = cfg.db_path
    if not db.exists():
        raise StorageError(f"no event log at {db}", hint="check --home, or start a daemon with `rtrec serve`")
    import duckdb

    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        raise StorageError(
            f"cannot open {db}: {exc}", hint="a daemon may be running on this home: use --url instead"
        ) from None
    out: dict[str, Any] = {"running": False, "home": str(cfg.home), "time": time.time()}
    try:
        n, last = con.execute("SELECT count(*), coalesce(max(seq), 0) FROM events").fetchone() or (0, 0)
        out["ingest"] = {"rate": 0.0, "accepted_total": n, "log_seq": last}
        out["catalog"] = {"items": _scalar(con, "SELECT count(*) FROM items")}
        row = _row(con, "SELECT seq, path, epoch(created_at), model_version FROM checkpoints ORDER BY seq DESC LIMIT 1")
        if row:
            out["checkpoint"] = {"seq": row[0], "path": row[1], "created_at": row[2], "model_version": row[3]}
        out["drift_alarms"] = [
            {"ts": str(r[0]), "seq": r[1], "detector": r[2], "stat": r[3]}
            for r in _rows(con, "SELECT ts, seq, detector, stat FROM drift_alarms ORDER BY seq")
        ]
        out["top_items"] = [
            r[0]
            for r in _rows(
                con,
                "SELECT item_id FROM events WHERE event_type NOT IN ('impression', 'skip', 'dismiss') "
                "AND seq > (SELECT coalesce(max(seq), 0) - 10000 FROM events) "
                "GROUP BY item_id ORDER BY count(*) DESC LIMIT 10",
            )
        ]
    finally:
        con.close()
    files = checkpoint_files(cfg.home)
    if files:
        from rtrec.learn import OnlineLearner

        for _, path in files:
            try:
                learner = OnlineLearner.load(path, cfg)
            except RtrecError:
                continue
            model = dict(learner.stats())
            out["model"] = model
            out["quality"] = current_quality(model)
            out["model_version"] = learner.model_version
            out["learn"] = {"rate": 0.0, "learned_seq": learner.last_seq, "lag_events": max(0, last - learner.last_seq)}
            out.setdefault(
                "checkpoint", {"seq": learner.last_seq, "path": str(path), "created_at": path.stat().st_mtime}
            )
            if not out["drift_alarms"]:
                out["drift_alarms"] = list(learner.drift_alarms)
            break
    return jsonable(out)


def _rows(con: Any, sql: str) -> list[tuple[Any, ...]]:
    try:
        return con.execute(sql).fetchall()
    except Exception:  # an older schema without the table: show what there is
        return []


def _row(con: Any, sql: str) -> tuple[Any, ...] | None:
    rows = _rows(con, sql)
    return rows[0] if rows else None


def _scalar(con: Any, sql: str) -> Any:
    row = _row(con, sql)
    return row[0] if row else None
