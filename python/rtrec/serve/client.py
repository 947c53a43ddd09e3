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
from typing import Any, cast

from rtrec.config import Config
from rtrec.contracts import StatsResponse, StoredAlarm
from rtrec.errors import RtrecError, StorageError

RUNTIME_FILE = "serve.json"


def get_json(url: str, token: str | None = None, timeout: float = 5.0, method: str = "GET") -> Any:
    """GET (or ``method``) ``url`` and decode JSON; raise :class:`StorageError` with the cause when it fails."""
    req = urllib.request.Request(url, headers={"Accept": "application/json"}, method=method)
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


def offline_stats(cfg: Config) -> StatsResponse:
    """The stats a stopped daemon would show, read from its database and newest checkpoint."""
    from rtrec.events import EventLog
    from rtrec.jsonable import jsonable
    from rtrec.serve.checkpoints import checkpoint_files
    from rtrec.serve.status import current_quality

    db = cfg.db_path
    if not db.exists():
        raise StorageError(f"no event log at {db}", hint="check --home, or start a daemon with `rtrec serve`")
    try:
        log = EventLog.open(db, cfg.events, read_only=True)
    except StorageError as exc:
        raise StorageError(str(exc), hint="a daemon may be running on this home: use --url instead") from None
    out: StatsResponse = {"running": False, "home": str(cfg.home), "time": time.time()}
    try:
        last = log.last_seq()
        out["ingest"] = {"rate": 0.0, "accepted_total": log.count_events(), "log_seq": last}
        out["catalog"] = {"items": log.count_items()}
        checkpoint = log.last_checkpoint()
        if checkpoint:
            out["checkpoint"] = checkpoint
        out["drift_alarms"] = log.drift_alarms()
        out["top_items"] = log.recent_top_items(10)
    finally:
        log.close()
    files = checkpoint_files(cfg.home)
    if files:
        from rtrec.learn import OnlineLearner

        for _, path in files:
            try:
                learner = OnlineLearner.load(path, cfg)
            except RtrecError:
                continue
            model = learner.stats()
            out["model"] = model
            out["quality"] = current_quality(model)
            out["model_version"] = learner.model_version
            out["learn"] = {"rate": 0.0, "learned_seq": learner.last_seq, "lag_events": max(0, last - learner.last_seq)}
            out.setdefault(
                "checkpoint",
                {"seq": learner.last_seq, "path": str(path), "created_at": path.stat().st_mtime},
            )
            if not out["drift_alarms"]:
                out["drift_alarms"] = list[StoredAlarm](learner.drift_alarms)
            break
    return cast(StatsResponse, jsonable(out))
