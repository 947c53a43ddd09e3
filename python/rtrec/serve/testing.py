"""Helpers for tests and benchmarks: a real ``rtrec serve`` subprocess on a free loopback port.

>>> d = DaemonProcess(tmp_path / "home").start()  # doctest: +SKIP
>>> d.get("/healthz")["status"]  # doctest: +SKIP
'ok'
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

#: A config for fast tests: no language model, small batches, frequent inbox polls.
FAST_CONFIG = """\
[text]
enabled = false

[learner]
batch_size = 64

[serve]
# Tests post bursts and wait for them: backpressure has its own test, with its own limits.
max_lag_s = 60.0
checkpoint_every_s = {checkpoint_every_s}
inbox_poll_s = 0.2
max_batch = 5000
max_body_bytes = 2000000
"""


class DaemonProcess:
    """A ``python -m rtrec serve --port 0`` subprocess; ``url`` is set once it answers ``/healthz``.

    A ``config.toml`` (``FAST_CONFIG`` unless ``config`` is given) is written to the home if
    the home has none. The daemon's output goes to ``<home>/daemon.log``.
    """

    def __init__(
        self,
        home: Path,
        *,
        config: str | None = None,
        checkpoint_every_s: float = 30.0,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        cfg = self.home / "config.toml"
        if not cfg.exists():
            cfg.write_text(config if config is not None else FAST_CONFIG.format(checkpoint_every_s=checkpoint_every_s))
        src = Path(__file__).resolve().parents[2]
        path = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p)
        self.env = {**os.environ, "PYTHONPATH": path, "RTREC_HOME": str(self.home), **(env or {})}
        self.env.pop("RTREC_CONFIG", None)
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.log_path = self.home / "daemon.log"
        self._log_file: Any = None

    def start(self, timeout: float = 120.0) -> DaemonProcess:
        (self.home / "serve.json").unlink(missing_ok=True)
        self._log_file = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtrec", "serve", "--home", str(self.home), "--port", "0", *self.args],
            env=self.env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        runtime = self.home / "serve.json"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            try:
                info = json.loads(runtime.read_text())
                if info.get("pid") == self.proc.pid:
                    self.url = str(info["url"])
                    self.request("GET", "/healthz", timeout=2.0)
                    return self
            except (OSError, ValueError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"daemon did not start within {timeout} s:\n{self.log()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        """Send one request; return (status, decoded JSON or text). Does not raise on 4xx/5xx."""
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw, ctype = resp.status, resp.read(), resp.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            status, raw, ctype = exc.code, exc.read(), exc.headers.get("content-type", "")
        return status, (json.loads(raw) if "json" in ctype else raw.decode(errors="replace"))

    def get(self, path: str, **kw: Any) -> Any:
        status, out = self.request("GET", path, **kw)
        if status != 200:
            raise AssertionError(f"GET {path} answered {status}: {out}")
        return out

    def post(self, path: str, body: Any, **kw: Any) -> Any:
        status, out = self.request("POST", path, body, **kw)
        if status != 200:
            raise AssertionError(f"POST {path} answered {status}: {out}")
        return out

    def terminate(self, timeout: float = 120.0) -> int:
        """SIGTERM, then wait for the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._close_log()

    def kill(self) -> None:
        """SIGKILL (``kill -9``) if still running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> DaemonProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.kill()


GENRES = ("drama", "comedy", "action", "romance", "scifi", "horror")


def genre_world(
    *, per_genre: int = 40, users: int = 150, ratings_per_user: int = 25, t0: float = 1_700_000_000.0, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A small film catalog and a history of star ratings, for retrieval tests and benchmarks.

    Each user has a favourite genre (horror is the least common, so popularity alone does
    not serve its fans) and rates mostly films of it, highly; other films get low ratings.
    Returns (items for ``/v1/items``, events for ``/v1/events``).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    items = [
        {"item_id": f"{g}-{i}", "title": f"A {g} film, number {i}", "category": g, "tags": [g]}
        for g in GENRES
        for i in range(per_genre)
    ]
    share = np.array([0.3, 0.25, 0.2, 0.1, 0.1, 0.05])
    events: list[dict[str, Any]] = []
    t = t0
    for u in range(users):
        fav = GENRES[int(rng.choice(len(GENRES), p=share))]
        for _ in range(ratings_per_user):
            own = rng.random() < 0.8
            g = fav if own else GENRES[int(rng.integers(len(GENRES)))]
            # Within a genre, lower numbers are the better-known films.
            i = min(int(rng.geometric(0.08)) - 1, per_genre - 1)
            stars = float(rng.integers(4, 6) if g == fav else rng.integers(1, 4))
            t += float(rng.integers(1, 60))
            events.append(
                {
                    "event_id": f"w{len(events)}",
                    "ts": t,
                    "user_id": f"user-{u}",
                    "item_id": f"{g}-{i}",
                    "event_type": "rating",
                    "value": stars,
                }
            )
    return items, events
