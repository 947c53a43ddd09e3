"""The daemon: one process that owns the event log and the model, serving them over HTTP.

Threads and what each one owns:

- main thread: the uvicorn HTTP server (event loop plus its worker threads). Request
  handlers commit events to the log and read the model, but never train it.
- ``learner``: the only writer of the model. It tails the ``events`` table after
  ``learner.last_seq`` and learns each batch (the same code as ``rtrec replay``), applies
  catalog and text-embedding updates handed to it, and expires pending impressions.
- ``encoder``: loads the text encoder and encodes new or changed catalog items in
  batches (on the GPU when there is one), handing the embeddings to the learner.
- ``checkpointer``: saves the model every ``serve.checkpoint_every_s`` and samples the
  dashboard series.
- ``inbox``: ingests files dropped into ``$RTREC_HOME/inbox/``.
- ``demo`` (``rtrec serve --demo`` only): simulated users playing recommend → feedback.

Exactly-once learning: an event is acknowledged only once committed with a sequence
number; a checkpoint stores the model together with the ``last_seq`` it has learned, and
a restart loads the newest readable checkpoint and tails after its ``last_seq``. Whatever
was learned after that checkpoint is forgotten with the process and learned again.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rtrec import __version__
from rtrec.config import Config
from rtrec.errors import ConfigError, CorruptDataError, InvalidInputError, Overloaded, RtrecError, StorageError
from rtrec.jsonable import jsonable
from rtrec.learn.online import CONSUMED_TYPES as EXCLUDE_TYPES
from rtrec.serve import inbox as inbox_mod
from rtrec.serve.metrics import Rate, Registry, TimeSeries, labelled_gauge
from rtrec.serve.policy import select_slate
from rtrec.text import centre

log = logging.getLogger("rtrec.serve")

# Users remembered between a commit and the learner's step (the learner keeps the rest).
FRESH_USERS = 100_000
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_KEEP = 3
RUNTIME_FILE = "serve.json"
TAIL_MIN = 64
EXPIRE_EVERY_S = 1.0
# How long the learner waits, before each learn call, for recommend requests in flight to
# finish: scoring waits for the model lock, which a learn call holds for several milliseconds.
# Short and bounded: at 50 ms (with 10 ms for ingests) a steady stream of requests held the
# learner to about 9,000 events/s under bench/load.py; it must slow learning, never stop it.
YIELD_TO_RECOMMEND_S = 0.005
SERIES_STEP_S = 10.0
# On SIGTERM the learner learns on for at most this long, then the daemon checkpoints and exits.
SHUTDOWN_LEARN_S = 3.0


def checkpoint_files(home: Path) -> list[tuple[int, Path]]:
    """Checkpoint files under ``home``, newest (highest sequence number) first."""
    folder = home / CHECKPOINT_DIR
    out = []
    if folder.is_dir():
        for p in folder.glob("learner-*.ckpt"):
            try:
                out.append((int(p.stem.split("-", 1)[1]), p))
            except ValueError:
                continue
    return sorted(out, reverse=True)


class InFlight:
    """Counts the requests of one kind in progress, so that the learner can step aside for them.

    >>> busy = InFlight()
    >>> with busy:
    ...     busy.wait_idle(0.0)
    False
    >>> busy.wait_idle(0.0)
    True
    """

    def __init__(self) -> None:
        self._n = 0
        self._cond = threading.Condition(threading.Lock())

    def __enter__(self) -> None:
        with self._cond:
            self._n += 1

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._n -= 1
            if self._n == 0:
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for no request in progress; whether there is none."""
        with self._cond:
            return self._cond.wait_for(lambda: self._n == 0, timeout)


class Daemon:
    """The long-running service. ``Daemon(cfg).run()`` serves until SIGTERM/SIGINT."""

    def __init__(self, cfg: Config, *, demo: bool = False, demo_rate: float = 20.0) -> None:
        from rtrec.events import EventLog

        self.cfg = cfg
        self.home = cfg.home
        self.home.mkdir(parents=True, exist_ok=True)
        sc = cfg.serve
        self.max_body_bytes = sc.max_body_bytes
        self.max_batch = sc.max_batch
        self.token = sc.token
        self.demo = demo
        self.demo_rate = demo_rate
        self.started_at = time.time()
        self.url: str | None = None
        self._rng = np.random.default_rng()
        self._rng_lock = threading.Lock()

        self.log = EventLog.open(cfg.db_path, cfg.events)
        self._encoder: Any = None
        self._text: dict[str, Any] = {
            "enabled": cfg.text.enabled,
            "status": "starting" if cfg.text.enabled else "disabled",
            "device": None,
            "model": cfg.text.model if cfg.text.enabled else None,
            "queue": 0,
        }
        if cfg.text.enabled:
            self._load_encoder()
        self.learner, self.resumed_from = self._load_learner()
        self.learner.yield_point = self._yield_to_requests
        self._log_seq = int(self.log.last_seq() or 0)
        self._model_lock = threading.RLock()  # held by whoever mutates or saves the model
        self._stop = threading.Event()  # every background loop but the learner
        self._stop_learner = threading.Event()
        self._wake_learner = threading.Event()
        self._items_changed = threading.Event()
        self._items_changed.set()  # encode whatever the catalog holds at start
        self._catalog_dirty = True
        self._pending_embeddings: tuple[Any, Any] | None = None
        self._threads: list[threading.Thread] = []
        self._signals: list[int] = []

        # Catalog as the recommend path sees it: ids, position index, freshness rank.
        self._catalog_ids: list[str] = []
        self._catalog_index: dict[str, int] = {}
        self._fresh_bonus = np.zeros(0)
        self._catalog_version = 0
        self._view_key: tuple[int, int] | None = None
        self._view: tuple[np.ndarray, dict[str, int], np.ndarray] = (np.zeros(0, bool), {}, np.zeros(0))
        # For cold start: the catalog's embeddings centred on their mean and normalised, and the mean.
        self._embeddings: tuple[dict[str, int], np.ndarray, np.ndarray] | None = None

        # Users with events committed but perhaps not learned yet, and what they consumed (newest last).
        self._fresh: dict[str, set[str]] = {}
        self._user_lock = threading.Lock()
        self._recommending = InFlight()

        # Freshness: (last_seq, monotonic ack time) per committed batch, oldest first.
        self._acks: collections.deque[tuple[int, float]] = collections.deque()
        self._learned: collections.deque[float] = collections.deque(maxlen=100_000)
        self._ack_lock = threading.Lock()
        self._requests: collections.OrderedDict[str, dict[str, float]] = collections.OrderedDict()

        self._last_checkpoint: dict[str, Any] | None = None
        self._checkpoint_seq = int(self.learner.last_seq)
        self._checkpointed_version = self.learner.model_version if self.resumed_from else -1
        self._learner_error: str | None = None
        self._inbox_counts = {"done": 0, "rejected": 0}
        self._http_counts: dict[str, int] = {"refused": 0, "timed_out": 0}
        self._server: Any = None
        self._restarts: dict[str, int] = {}
        self._alarms_stored = len(self.learner.drift_alarms)
        self._setup_metrics()
        self.c_quarantined.inc(self.log.count_quarantined())

    # ----------------------------------------------------------------- start-up

    def _load_learner(self) -> tuple[Any, dict[str, Any] | None]:
        from rtrec.learn import OnlineLearner

        # A crash while writing a checkpoint leaves its temporary file: never read, only removed.
        for tmp in (self.home / CHECKPOINT_DIR).glob("*.ckpt.*.tmp"):
            log.info("removing %s, left by an interrupted checkpoint", tmp.name)
            tmp.unlink(missing_ok=True)

        for seq, path in checkpoint_files(self.home):
            try:
                learner = OnlineLearner.load(path, self.cfg)
            except (CorruptDataError, OSError) as exc:
                log.warning("checkpoint %s is unreadable (%s); trying an older one", path.name, exc)
                continue
            log.info("resumed from checkpoint %s (seq %d)", path.name, learner.last_seq)
            return learner, {"seq": int(learner.last_seq), "path": str(path), "file_seq": seq}
        log.info("no checkpoint: cold start with embedded defaults")
        text_dim = int(getattr(self._encoder, "dim", 0) or 0) if self._encoder is not None else 0
        return OnlineLearner(self.cfg, text_dim=text_dim), None

    def _load_encoder(self) -> None:
        # Loaded before the learner: a cold-start model needs the embedding width.
        from rtrec.text import load_encoder

        try:
            self._encoder = load_encoder(self.cfg.text)
        except RtrecError as exc:
            self._text["status"] = f"unavailable: {exc}"
            log.warning("text encoder unavailable (%s); serving without text features", exc)
            return
        self._text["device"] = str(getattr(self._encoder, "device", "cpu"))
        self._text["status"] = "ready"

    def _setup_metrics(self) -> None:
        r = self.registry = Registry()
        self.ingest_rate = Rate(10.0)
        self.learn_rate = Rate(10.0)
        self.recommend_rate = Rate(10.0)
        self.c_accepted = r.counter("events_accepted_total", "Events committed to the log.")
        self.c_duplicates = r.counter("events_duplicate_total", "Events ignored as already logged (by event_id).")
        self.c_rejected = r.counter("events_rejected_total", "Events rejected as invalid.")
        self.c_learned = r.counter("events_learned_total", "Events learned by the model.")
        self.c_recommend = r.counter("recommend_requests_total", "Recommend requests served.")
        self.c_explored = r.counter("recommend_explored_items_total", "Items shown by exploration, not by score.")
        self.c_items = r.counter("items_upserted_total", "Catalog items inserted or replaced.")
        self.c_learn_errors = r.counter("learner_errors_total", "Learner batches that raised.")
        self.c_throttled = r.counter(
            "ingest_throttled_total", "Event batches refused with 429 while the learner was behind."
        )
        self.c_quarantined = r.counter(
            "events_quarantined_total", "Events the learner set aside (kept in the log with the reason)."
        )
        r.gauge("ingest_rate_events_per_second", "Events committed per second (10 s window).", self.ingest_rate.rate)
        r.gauge("learn_rate_events_per_second", "Events learned per second (10 s window).", self.learn_rate.rate)
        r.gauge("learner_lag_events", "Committed events not learned yet.", lambda: self._lag()[0])
        r.gauge("learner_lag_seconds", "Age of the oldest committed event not learned yet.", lambda: self._lag()[1])
        r.gauge("model_version", "Model updates so far.", lambda: self.learner.model_version)
        r.gauge("learned_seq", "Sequence number of the last learned event.", lambda: self.learner.last_seq)
        r.gauge("log_seq", "Sequence number of the last committed event.", lambda: self._log_seq)
        r.gauge("catalog_items", "Items in the catalog.", lambda: len(self._catalog_ids))
        r.gauge("text_encoder_queue", "Catalog items waiting for the text encoder.", lambda: self._text["queue"])
        r.gauge("checkpoint_age_seconds", "Seconds since the last checkpoint.", self._checkpoint_age)
        r.gauge("drift_alarms", "Drift alarms raised so far.", lambda: len(self.learner.drift_alarms))
        self.lat_recommend = r.latency("recommend_latency_seconds", "Time to compute a recommendation.")
        self.lat_ingest = r.latency("ingest_commit_seconds", "Time to validate and commit an events batch.")
        self.lat_learned = r.latency("freshness_learned_seconds", "From an events batch acknowledged to learned.")
        self.lat_reflected = r.latency(
            "freshness_recommend_seconds", "From an events batch acknowledged to a recommend using it."
        )
        self.lat_learn_batch = r.latency("learn_batch_seconds", "Time to learn one tailed batch.")
        self.series = {name: TimeSeries(SERIES_STEP_S, 3600.0) for name in ("auc", "logloss", "ctr", "ingest", "learn")}

    def _start_thread(self, name: str, target: Any) -> None:
        t = threading.Thread(target=self._guard(name, target), name=f"rtrec-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def _guard(self, name: str, target: Any) -> Any:
        """Run ``target``; if it raises, log it and start it again (after 1 s, doubling to 60 s)."""

        def run() -> None:
            delay = 1.0
            while True:
                try:
                    target()
                    return
                except Exception:  # a thread that dies leaves the daemon half alive: restart it
                    log.exception("%s thread failed; restarting it in %.0f s", name, delay)
                    self._restarts[name] = self._restarts.get(name, 0) + 1
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2.0, 60.0)

        return run

    def start_background(self) -> None:
        """Start every thread except the HTTP server."""
        self._refresh_catalog()
        self._start_thread("stored-ids", self.log.warm_up)  # else the first POST waits for it
        self._start_thread("learner", self._learn_loop)
        if self._encoder is not None:
            self._start_thread("encoder", self._encoder_loop)
        self._start_thread("checkpointer", self._checkpoint_loop)
        self._start_thread("inbox", self._inbox_loop)
        if self.demo:
            self._start_thread("demo", self._demo_loop)

    # ------------------------------------------------------------------- ingest

    def check_capacity(self) -> None:
        """Raise :class:`Overloaded` while the learner is further behind than ``serve.max_lag_*`` allow."""
        behind, lag_events, lag_s = self._behind()
        if behind:
            self.c_throttled.inc()
            rate = max(self.learn_rate.rate(), 1.0)
            raise Overloaded(
                f"the learner is {lag_events} events ({lag_s:.2f} s) behind: retry shortly",
                retry_after_s=min(30.0, max(1.0, lag_events / rate)),
                hint="nothing of this batch was stored; send it again after Retry-After seconds",
            )

    def _behind(self) -> tuple[bool, int, float]:
        """Whether the learner is too far behind to take more events, and by how much (events, seconds)."""
        lag_events, lag_s = self._lag()
        sc = self.cfg.serve
        return lag_s > sc.max_lag_s or lag_events > sc.max_lag_events, lag_events, lag_s

    def ingest_events(self, rows: list[Any], source: str = "http") -> dict[str, Any]:
        """Commit ``rows`` and answer as ``POST /v1/events`` does."""
        t0 = time.perf_counter()
        s = self.log.ingest(rows, source=source)  # every row checked on its own; bad ones stored with a reason
        accepted, duplicates = int(s.accepted), int(s.duplicates)
        first_seq, last_seq = s.first_seq, s.last_seq
        bad = {int(r.index) for r in s.rejected}
        rejected = [{"index": int(r.index), "reason": str(r.reason)} for r in s.rejected]
        ack = time.monotonic()
        self.lat_ingest.observe(time.perf_counter() - t0)
        self._note_committed(accepted, duplicates, len(rejected), last_seq, ack)
        if accepted:
            self._note_feedback(r for j, r in enumerate(rows) if j not in bad and isinstance(r, dict))
        out: dict[str, Any] = {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}
        if accepted:
            out["first_seq"], out["last_seq"] = first_seq, last_seq
        return out

    def _note_committed(self, accepted: int, duplicates: int, rejected: int, last_seq: int | None, ack: float) -> None:
        self.c_accepted.inc(accepted)
        self.c_duplicates.inc(duplicates)
        self.c_rejected.inc(rejected)
        if accepted and last_seq is not None:
            self.ingest_rate.mark(accepted)
            with self._ack_lock:
                self._log_seq = max(self._log_seq, int(last_seq))
                self._acks.append((int(last_seq), ack))
            self._wake_learner.set()

    def _note_feedback(self, rows: Any) -> None:
        """Committed but not yet learned: who is known now, and what they consumed (the learner's
        own record catches up within its next step; this covers the moment in between)."""
        with self._user_lock:
            for r in rows:
                user = r.get("user_id")
                if user is None:
                    continue
                seen = self._fresh.pop(str(user), None) or set()
                if r.get("event_type") in EXCLUDE_TYPES and r.get("item_id") is not None:
                    seen.add(str(r["item_id"]))
                self._fresh[str(user)] = seen  # newest last
            while len(self._fresh) > FRESH_USERS:
                self._fresh.pop(next(iter(self._fresh)))

    def upsert_items(self, rows: list[Any]) -> dict[str, Any]:
        """Write the valid items of ``rows``; each bad row is answered with its reason, the rest stored."""
        from rtrec.events import Rejected

        bad: list[Rejected] = []
        n = int(self.log.upsert_items(rows, rejected=bad)) if rows else 0
        self.c_items.inc(n)
        if n:
            self._on_items_changed()
        return {"upserted": n, "rejected": [{"index": r.index, "reason": r.reason} for r in bad]}

    def _on_items_changed(self) -> None:
        self._refresh_catalog()
        self._catalog_dirty = True
        self._items_changed.set()
        self._wake_learner.set()

    def _refresh_catalog(self) -> None:
        items = self.log.items()
        ids = [str(x) for x in items.column("item_id").to_pylist()] if items.num_rows else []
        n = len(ids)
        fresh = np.zeros(n)
        if n:
            # Newer items get a bonus for cold-start lists: by update time when the catalog has
            # one, otherwise by position (the log appends new items at the end).
            order = np.arange(n, dtype=np.float64)
            for col in ("updated_at", "created_at", "ts"):
                if col in items.column_names:
                    vals = items.column(col).to_pylist()
                    if all(v is not None for v in vals):
                        order = np.argsort(np.argsort(np.array([_epoch(v) for v in vals]))).astype(np.float64)
                    break
            newest = max(1, min(100, n // 10))
            fresh = np.clip((order - (n - 1 - newest)) / newest, 0.0, 1.0)
        self._catalog_items = items
        self._catalog_version += 1
        self._catalog_ids = ids
        self._catalog_index = {item: i for i, item in enumerate(ids)}
        self._fresh_bonus = fresh

    # ------------------------------------------------------------------ learner

    def _learn_loop(self) -> None:
        last_expire = 0.0
        while True:
            stopping = self._stop_learner.is_set()
            self._wake_learner.wait(timeout=0.05)
            self._wake_learner.clear()
            try:
                self._apply_side_info()
                self._learn_available(drain=stopping)
                now = time.time()
                if now - last_expire >= EXPIRE_EVERY_S:
                    last_expire = now
                    self._yield_to_requests()
                    with self._model_lock:
                        self.learner.expire(now)
                self._learner_error = None
            except RtrecError as exc:
                self._learner_failed(exc)
            except Exception as exc:  # keep serving; the error shows in /healthz and the logs
                log.exception("learner batch failed")
                self._learner_failed(exc)
            if stopping:
                return

    def _learner_failed(self, exc: Exception) -> None:
        self.c_learn_errors.inc()
        self._learner_error = f"{type(exc).__name__}: {exc}"
        time.sleep(1.0)

    def _apply_side_info(self) -> None:
        if self._catalog_dirty:
            self._catalog_dirty = False
            with self._model_lock:
                self.learner.set_catalog(self._catalog_items)
        pending, self._pending_embeddings = self._pending_embeddings, None
        if pending is not None:
            try:
                with self._model_lock:
                    self.learner.set_item_embeddings(*pending)
            except InvalidInputError as exc:  # e.g. a checkpoint from another text model
                self._text["status"] = f"not used by the model: {exc}"
                log.warning("item embeddings not used: %s", exc)

    def _learn_available(self, drain: bool = False) -> int:
        """Learn what the log holds past the learner. Stopping, it learns on for at most
        ``SHUTDOWN_LEARN_S`` (``drain``) or stops after the batch in hand; what is left is
        learned after a restart, from the checkpoint, exactly once."""
        total = 0
        until = time.monotonic() + SHUTDOWN_LEARN_S
        while True:
            got = 0
            # Small batches: scoring waits while the model learns, so each learn call stays short.
            size = max(TAIL_MIN, self.cfg.learner.batch_size)
            for batch in self.log.tail(int(self.learner.last_seq), max_rows=size * 8, batch_size=size):
                if self._stop_learner.is_set() and (not drain or time.monotonic() > until):
                    return total
                if batch.num_rows == 0:
                    continue
                self._yield_to_requests()
                t0 = time.perf_counter()
                self._learn_one(batch)
                self.lat_learn_batch.observe(time.perf_counter() - t0)
                got += batch.num_rows
                self._after_learn(batch)
            total += got
            if got == 0:
                return total
            if not drain and self._stop_learner.is_set():
                return total
            self._apply_side_info()

    def _learn_one(self, batch: Any) -> None:
        """Learn one tailed batch. A batch the learner fails on is quarantined (its events stay in
        the log, recorded with the reason in ``quarantined_events``) and learning goes on after it."""
        try:
            with self._model_lock:
                res = self.learner.learn(batch)
            bad = res.quarantined
        except Exception as exc:
            log.exception("learning events %d..%d failed; quarantining them", *_seq_range(batch))
            seqs = batch.column("seq").to_numpy()
            with self._model_lock:
                self.learner.skip(seqs)
            reason = f"learner failed on this batch: {type(exc).__name__}: {exc}"
            bad = [(int(s), reason) for s in seqs.tolist()]
        if bad:
            self.c_quarantined.inc(len(bad))
            try:
                self.log.quarantine(bad)
            except Exception as exc:  # the count above still shows them
                log.warning("could not record quarantined events: %s", exc)

    def _yield_to_requests(self) -> None:
        """Let recommend requests in progress finish before taking the model lock."""
        if not self._stop_learner.is_set():
            self._recommending.wait_idle(YIELD_TO_RECOMMEND_S)

    def _after_learn(self, batch: Any) -> None:
        n = batch.num_rows
        self.c_learned.inc(n)
        self.learn_rate.mark(n)
        seq = int(self.learner.last_seq)
        now = time.monotonic()
        with self._ack_lock:
            self._log_seq = max(self._log_seq, seq)
            while self._acks and self._acks[0][0] <= seq:
                _, ack = self._acks.popleft()
                self.lat_learned.observe(now - ack)
                self._learned.append(ack)

    def _lag(self) -> tuple[int, float]:
        with self._ack_lock:
            oldest = self._acks[0][1] if self._acks else None
            lag = max(0, self._log_seq - int(self.learner.last_seq))
        return lag, (time.monotonic() - oldest) if oldest is not None else 0.0

    # ------------------------------------------------------------------ encoder

    def _encoder_loop(self) -> None:
        from rtrec.text import EmbeddingCache

        if self._encoder is None:
            return
        cache = EmbeddingCache(self.log.cursor, self._encoder, self.cfg.text.template)
        while not self._stop.is_set():
            if not self._items_changed.wait(timeout=0.5):
                continue
            self._items_changed.clear()
            items = self._catalog_items
            self._text["queue"] = int(items.num_rows)
            self._text["status"] = "encoding"
            try:
                res = cache.refresh(items, progress=lambda done, total: self._text.update(queue=total - done))
                ids, matrix = cache.all()
            except Exception as exc:
                log.exception("text encoding failed")
                self._text["status"] = f"error: {exc}"
                self._text["queue"] = 0
                continue
            self._text.update({k: res.get(k) for k in ("encoded", "cached", "items_per_s")}, queue=0, status="ready")
            if len(ids):
                mean = np.asarray(matrix, dtype=np.float32).mean(axis=0)
                self._embeddings = ({str(i): j for j, i in enumerate(ids)}, centre(matrix, mean), mean)
                self._pending_embeddings = (list(ids), matrix)
                self._wake_learner.set()

    # ------------------------------------------------------------- checkpoints

    def checkpoint(self) -> dict[str, Any] | None:
        """Save the model if it changed since the last checkpoint; return the record."""
        t0 = time.perf_counter()
        with self._model_lock:
            # Only the copy holds the learner up; the file is written while it learns on.
            version = int(self.learner.model_version)
            if version == self._checkpointed_version:
                return None
            seq = int(self.learner.last_seq)
            state = self.learner.snapshot()
        held = time.perf_counter() - t0
        folder = self.home / CHECKPOINT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"learner-{seq:012d}.ckpt"
        self.learner.save(path, state)
        del state
        self._checkpointed_version = version
        seconds = time.perf_counter() - t0
        size = path.stat().st_size
        learned = max(seq - self._checkpoint_seq, 0)
        self._checkpoint_seq = seq
        record = {
            "seq": seq,
            "path": str(path),
            "created_at": time.time(),
            "model_version": version,
            "seconds": seconds,
            "lock_seconds": held,
            "bytes": size,
            "bytes_per_learned_event": size / learned if learned else None,
        }
        self._last_checkpoint = record
        try:
            self.log.record_checkpoint(seq, str(path), version)
        except Exception as exc:  # the file is what restarts read; the table is a record
            log.warning("could not record checkpoint in the log: %s", exc)
        for _, old in checkpoint_files(self.home)[CHECKPOINT_KEEP:]:
            old.unlink(missing_ok=True)
        log.info("checkpoint %s (model version %d)", path.name, version)
        return record

    def _checkpoint_loop(self) -> None:
        every = self.cfg.serve.checkpoint_every_s
        next_ckpt = time.monotonic() + every
        while not self._stop.wait(timeout=min(SERIES_STEP_S, every, 1.0)):
            self._sample_series()
            self._store_alarms()
            if time.monotonic() >= next_ckpt:
                next_ckpt = time.monotonic() + every
                try:
                    self.checkpoint()
                except Exception:
                    log.exception("checkpoint failed")

    def _store_alarms(self) -> None:
        """Append drift alarms raised since the last call to the ``drift_alarms`` table."""
        alarms = self.learner.drift_alarms
        new = alarms[self._alarms_stored :]
        if not new:
            return
        self._alarms_stored = len(alarms)
        try:
            self.log.record_alarms(new)
        except Exception as exc:
            log.warning("could not record drift alarms: %s", exc)

    def _checkpoint_age(self) -> float:
        if self._last_checkpoint is None:
            return math.nan
        return time.time() - float(self._last_checkpoint["created_at"])

    def _sample_series(self) -> None:
        self.series["ingest"].set(self.ingest_rate.rate())
        self.series["learn"].set(self.learn_rate.rate())
        cur = current_quality(self._learner_stats())
        for key in ("auc", "logloss", "ctr"):
            if cur.get(key) is not None:
                self.series[key].set(float(cur[key]))

    # -------------------------------------------------------------------- inbox

    def _inbox_loop(self) -> None:
        folder = self.home / "inbox"
        inbox_mod.ensure_dirs(folder)
        while not self._stop.wait(timeout=self.cfg.serve.inbox_poll_s):
            for path, items in inbox_mod.pending(folder):
                if self._stop.is_set():
                    return
                if not items and self._behind()[0]:
                    break  # backpressure: event files wait in the inbox until the learner catches up
                out = inbox_mod.process(path, items, self._ingest_file, folder)
                self._inbox_counts["done" if out.ok else "rejected"] += 1

    def _ingest_file(self, path: Path, items: bool) -> Any:
        if items:
            summary = self.log.ingest_file(path, items=True)
            n = int(summary if isinstance(summary, int) else getattr(summary, "accepted", 0))
            self.c_items.inc(n)
            self._on_items_changed()
            return n
        s = self.log.ingest_file(path, items=False)
        self._note_committed(int(s.accepted), int(s.duplicates), len(s.rejected), s.last_seq, time.monotonic())
        return s

    # ---------------------------------------------------------------- recommend

    def _user_state(self, user_id: str) -> tuple[bool, set[str]]:
        """Whether the user has history, and the items not to recommend to them again: from the
        learner's record (no query of the log), plus what was committed since its last step."""
        known, consumed = self.learner.user_state(user_id)
        with self._user_lock:
            fresh = self._fresh.get(user_id)
        if fresh is not None:
            return True, consumed | fresh
        return known, consumed

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: list[str] | None = None,
        context: dict[str, Any] | None = None,
        policy: str | None = None,
        explain: bool = False,
    ) -> dict[str, Any]:
        with self._recommending:
            return self._recommend(user_id, k, exclude_seen, candidates, context, policy, explain)

    def _recommend(
        self,
        user_id: str,
        k: int,
        exclude_seen: bool,
        candidates: list[str] | None,
        context: dict[str, Any] | None,
        policy: str | None,
        explain: bool = False,
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        sc = self.cfg.serve
        policy = policy or sc.exploration
        known, seen = self._user_state(user_id)
        learned_seq = int(self.learner.last_seq)
        version = int(self.learner.model_version)
        if candidates is None:
            # Score everything the model knows in one call (its fast path), then keep the catalog.
            ids, raw, batch = self._score(user_id, None, context)
            in_catalog, index, fresh_all = self._catalog_view(ids)
            keep = in_catalog.copy()
            if exclude_seen and seen:
                for item in list(seen):
                    j = index.get(item)
                    if j is not None:
                        keep[j] = False
            pos = np.flatnonzero(keep)
            # Ids are looked up for the slate only: a list of every candidate id cost ~0.5 ms.
            cand: Sequence[str] = _Picked(ids, pos)
            scores, fresh, model_p = raw[pos], fresh_all[pos], raw[pos]

            def position(item: str) -> int | None:
                j = index.get(item)
                if j is None or not keep[j]:
                    return None
                return int(np.searchsorted(pos, j))
        else:
            cand = [c for c in dict.fromkeys(candidates) if not (exclude_seen and c in seen)]
            cat, bonus = self._catalog_index, self._fresh_bonus
            fresh = np.array([bonus[j] if (j := cat.get(c)) is not None else 0.0 for c in cand])
            _, scores, batch = self._score(user_id, cand, context) if cand else ([], np.zeros(0), None)
            pos = np.arange(len(cand))
            model_p = scores
            where = {c: j for j, c in enumerate(cand)}

            def position(item: str) -> int | None:
                return where.get(item)

        request_id = uuid.uuid4().hex
        if len(cand):
            if not known:
                scores = self._cold_scores(cand, position, scores, fresh, context)
            with self._rng_lock:
                slate = select_slate(
                    scores, k, policy=policy, epsilon=sc.epsilon, temperature=sc.temperature, rng=self._rng
                )
            items = [
                {"item_id": cand[j], "score": float(scores[j]), "propensity": float(p)}
                for j, p in zip(slate.indices.tolist(), slate.propensities.tolist(), strict=True)
            ]
            explored = int(slate.explored.sum())
            if batch is not None and len(slate.indices):
                # The features scored for each shown item: learned as they are when the impression comes.
                rows, probs = pos[slate.indices], model_p[slate.indices]
                self.learner.remember_served(request_id, batch, rows, probs)
                if explain:
                    names = self.learner.featurizer.dense_names
                    for it, r, p in zip(items, rows.tolist(), probs.tolist(), strict=True):
                        it["features"] = {
                            "hashed": batch.indices[batch.offsets[r] : batch.offsets[r + 1]].tolist(),
                            "dense": dict(zip(names, batch.dense[r].tolist(), strict=True)),
                            "model_probability": p,
                        }
        else:
            items, explored = [], 0
        self._remember(request_id, items)
        now = time.monotonic()
        with self._ack_lock:
            learned, self._learned = self._learned, collections.deque(maxlen=100_000)
        for ack in learned:
            self.lat_reflected.observe(now - ack)
        self.c_recommend.inc()
        self.c_explored.inc(explored)
        self.recommend_rate.mark()
        self.lat_recommend.observe(time.perf_counter() - t0)
        return {
            "request_id": request_id,
            "model_version": version,
            "learned_seq": learned_seq,
            "policy": policy,
            "cold_start": not known,
            "items": items,
        }

    def _score(
        self, user_id: str, items: list[str] | None, context: dict[str, Any] | None
    ) -> tuple[list[str], np.ndarray, Any]:
        ids, scores, batch = self.learner.score_batch(user_id, items, context)
        return list(ids), np.asarray(scores, dtype=np.float64).reshape(-1), batch

    def _catalog_view(self, ids: list[str]) -> tuple[np.ndarray, dict[str, int], np.ndarray]:
        """For the model's item list: which are in the catalog, an id → position map, freshness bonus.

        The model only ever appends items, so the view is rebuilt only when its length or the
        catalog changes.
        """
        key = (len(ids), self._catalog_version)
        if self._view_key != key:
            cat, bonus = self._catalog_index, self._fresh_bonus
            if cat:
                in_catalog = np.fromiter((i in cat for i in ids), dtype=bool, count=len(ids))
            else:  # no catalog posted: recommend whatever the events named
                in_catalog = np.ones(len(ids), dtype=bool)
            fresh = np.array([bonus[j] if (j := cat.get(i)) is not None else 0.0 for i in ids])
            self._view = (in_catalog, {item: j for j, item in enumerate(ids)}, fresh)
            self._view_key = key
        return self._view

    def _cold_scores(
        self,
        cand: Sequence[str],
        position: Callable[[str], int | None],
        model: np.ndarray,
        fresh: np.ndarray | None,
        context: dict[str, Any] | None,
    ) -> np.ndarray:
        """Unknown user: blend the model's item prior with popularity, freshness and text similarity.

        ``position`` gives an item's index in ``cand`` (None when not a candidate).
        """
        n = len(cand)
        pop = np.zeros(n)
        popular = self.learner.popular(min(n, 200))
        for r, item in enumerate(popular):
            j = position(item)
            if j is not None and pop[j] == 0.0:  # the first (best) rank of an id wins
                pop[j] = 1.0 - r / len(popular)
        parts = [(0.5, model), (0.3, pop)]
        if fresh is not None:
            parts.append((0.2, fresh))
        text = None
        if context:
            text = next((context[k] for k in ("text", "query", "q") if isinstance(context.get(k), str)), None)
        if text and self._encoder is not None and self._embeddings is not None:
            sim = self._text_similarity(text, cand)
            if sim is not None:
                parts.append((0.4, sim))
        total = sum(w for w, _ in parts)
        return np.asarray(sum(w * v for w, v in parts) / total, dtype=np.float64)

    def _text_similarity(self, text: str, cand: Sequence[str]) -> np.ndarray | None:
        """Cosine of the request text with each candidate, on centred embeddings, clipped to [0, 1].

        Centring takes out the direction every item of the catalog shares, so the items that
        match the request stand out from the rest.
        """
        index, mat, mean = self._embeddings  # type: ignore[misc]
        try:
            q = np.asarray(self._encoder.encode([text]), dtype=np.float32).reshape(-1)
        except Exception as exc:
            log.warning("could not encode request text: %s", exc)
            return None
        if q.shape[0] != mat.shape[1]:
            return None
        q = centre(q, mean)
        rows = np.array([index.get(c, -1) for c in cand])
        sim = np.zeros(len(cand))
        ok = rows >= 0
        sim[ok] = np.clip(mat[rows[ok]] @ q, 0.0, 1.0)
        return sim

    def _remember(self, request_id: str, items: list[dict[str, Any]]) -> None:
        with self._ack_lock:
            self._requests[request_id] = {it["item_id"]: it["propensity"] for it in items}
            if len(self._requests) > 100_000:
                self._requests.popitem(last=False)

    # -------------------------------------------------------------------- stats

    def _learner_stats(self) -> dict[str, Any]:
        try:
            return dict(self.learner.stats())
        except Exception as exc:
            return {"error": str(exc)}

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self._learner_error is None else "degraded",
            "version": __version__,
            "model_version": int(self.learner.model_version),
            "uptime_s": round(time.time() - self.started_at, 3),
            "learner_error": self._learner_error,
        }

    def top_items(self, k: int = 10) -> list[str]:
        try:
            return [str(x) for x in self.learner.popular(k)]
        except Exception:
            return []

    def stats(self) -> dict[str, Any]:
        lag_events, lag_s = self._lag()
        model = self._learner_stats()
        out = {
            "running": True,
            "version": __version__,
            "time": time.time(),
            "uptime_s": time.time() - self.started_at,
            "home": str(self.home),
            "url": self.url,
            "pid": os.getpid(),
            "ingest": {
                "rate": self.ingest_rate.rate(),
                "accepted_total": self.c_accepted.value,
                "duplicates_total": self.c_duplicates.value,
                "rejected_total": self.c_rejected.value,
                "log_seq": self._log_seq,
                "commit_latency": self.lat_ingest.percentiles(),
                "throttled_total": self.c_throttled.value,
            },
            "learn": {
                "rate": self.learn_rate.rate(),
                "learned_total": self.c_learned.value,
                "learned_seq": int(self.learner.last_seq),
                "lag_events": lag_events,
                "lag_s": lag_s,
                "batch_latency": self.lat_learn_batch.percentiles(),
                "errors": self.c_learn_errors.value,
                "error": self._learner_error,
                "quarantined_total": self.c_quarantined.value,
            },
            "freshness": {"learned": self.lat_learned.percentiles(), "recommend": self.lat_reflected.percentiles()},
            "recommend": {
                "rate": self.recommend_rate.rate(),
                "requests_total": self.c_recommend.value,
                "explored_items_total": self.c_explored.value,
                "latency": self.lat_recommend.percentiles(),
                "policy": self.cfg.serve.exploration,
                "epsilon": self.cfg.serve.epsilon,
                "temperature": self.cfg.serve.temperature,
            },
            "model_version": int(self.learner.model_version),
            "quality": current_quality(model),
            "series": {name: s.values() for name, s in self.series.items()},
            "model": model,
            "drift_alarms": self.learner.drift_alarms,
            "checkpoint": self._checkpoint_info(),
            "text": dict(self._text),
            "catalog": {"items": len(self._catalog_ids)},
            "top_items": self.top_items(10),
            "inbox": dict(self._inbox_counts),
            "http": {
                **self._http_counts,
                "open": len(self._server.server_state.connections) if self._server is not None else 0,
                "max_connections": self.cfg.serve.max_connections,
            },
            "threads": {"restarts": dict(self._restarts)},
        }
        return jsonable(out)

    def _checkpoint_info(self) -> dict[str, Any] | None:
        ck = self._last_checkpoint
        if ck is None and self.resumed_from is not None:
            ck = {"seq": self.resumed_from["seq"], "path": self.resumed_from["path"], "created_at": None}
            p = Path(ck["path"])
            if p.exists():
                ck["created_at"] = p.stat().st_mtime
        if ck is None:
            return None
        out = dict(ck)
        if out.get("created_at"):
            out["age_s"] = time.time() - float(out["created_at"])
        return out

    def metrics_text(self) -> str:
        model = self._learner_stats()
        quality = current_quality(model)
        extra: list[str] = []
        extra += labelled_gauge(
            "rtrec_progressive",
            "Progressive (predict-then-learn) quality of the model.",
            [({"metric": k}, float(v)) for k, v in quality.items() if isinstance(v, int | float)],
        )
        counts: dict[str, int] = collections.Counter(a["detector"] for a in self.learner.drift_alarms)
        extra += labelled_gauge(
            "rtrec_drift_alarms_by_detector",
            "Drift alarms raised, by detector.",
            [({"detector": d}, n) for d, n in counts.items()],
        )
        return self.registry.render(extra)

    # ---------------------------------------------------------------- lifecycle

    def _write_runtime(self) -> None:
        info = {"pid": os.getpid(), "url": self.url, "started_at": self.started_at, "token": bool(self.token)}
        tmp = self.home / (RUNTIME_FILE + ".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.home / RUNTIME_FILE)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)

    def run(self, sock: socket.socket, url: str) -> int:
        """Serve on the bound ``sock`` until SIGTERM/SIGINT, then shut down cleanly; return the exit status."""
        import uvicorn

        from rtrec.serve.api import create_app

        self.url = url
        # uvicorn re-raises the signal that stopped it once it is done; these handlers catch
        # that (and any later one) so that the drain and checkpoint below still run.
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        from rtrec.serve.protocol import RepeatFilter, guarded_protocol, raise_file_limit

        self.start_background()
        sc = self.cfg.serve
        soft, _ = raise_file_limit()
        if soft < sc.max_connections + 64:
            log.warning("open-file limit %d is low for serve.max_connections = %d", soft, sc.max_connections)
        logging.getLogger("asyncio").addFilter(RepeatFilter())
        config = uvicorn.Config(
            create_app(self),
            http=guarded_protocol(sc.request_timeout_s, sc.max_connections, self._http_counts),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
            timeout_keep_alive=min(30, max(1, int(sc.request_timeout_s))),
            lifespan="off",
        )
        server = uvicorn.Server(config)
        self._server = server
        self._write_runtime()
        log.info(
            "rtrec %s serving on %s (home %s, model version %d, learned seq %d, log seq %d)",
            __version__,
            self.url,
            self.home,
            self.learner.model_version,
            self.learner.last_seq,
            self._log_seq,
        )
        try:
            server.run(sockets=[sock])
        finally:
            self.shutdown()
        return 0

    def shutdown(self) -> None:
        """Stop the background threads, learn what is queued, checkpoint and close the log."""
        log.info("shutting down: learning what is queued, then checkpointing")
        self._stop.set()
        self._stop_learner.set()
        self._wake_learner.set()
        for t in self._threads:
            if t.name == "rtrec-learner":
                t.join()
        for t in self._threads:
            if t.name != "rtrec-learner":
                t.join(timeout=5.0)
        try:
            self.checkpoint()
        except Exception:
            log.exception("final checkpoint failed")
        try:
            self.log.close()
        finally:
            (self.home / RUNTIME_FILE).unlink(missing_ok=True)
        log.info("stopped at model version %d, learned seq %d", self.learner.model_version, self.learner.last_seq)

    # --------------------------------------------------------------------- demo

    def _demo_loop(self) -> None:
        from rtrec.serve.demo import play

        play(self, self._stop, rate=self.demo_rate)


class _Picked(Sequence[str]):
    """``ids[pos[j]]`` for each ``j``, without building the list."""

    def __init__(self, ids: list[str], pos: np.ndarray) -> None:
        self._ids, self._pos = ids, pos

    def __len__(self) -> int:
        return len(self._pos)

    def __getitem__(self, j: Any) -> Any:
        if isinstance(j, slice):
            return [self._ids[p] for p in self._pos[j].tolist()]
        return self._ids[int(self._pos[j])]


def _seq_range(batch: Any) -> tuple[int, int]:
    seqs = batch.column("seq").to_numpy()
    return (int(seqs.min()), int(seqs.max())) if len(seqs) else (0, 0)


def current_quality(model: dict[str, Any]) -> dict[str, Any]:
    """The latest progressive AUC, log loss and CTR from whatever shape ``learner.stats()`` has."""
    out: dict[str, Any] = {}
    for key in ("auc", "logloss", "ctr"):
        v = model.get(key)
        if v is None:
            for container in ("progressive", "quality", "metrics"):
                sub = model.get(container)
                if isinstance(sub, dict) and key in sub:
                    v = sub[key]
                    break
        if isinstance(v, list | tuple):
            v = v[-1] if v else None
            if isinstance(v, dict):
                v = v.get("value", v.get(key))
            elif isinstance(v, list | tuple):
                v = v[-1] if v else None
        if isinstance(v, int | float | np.floating) and math.isfinite(float(v)):
            out[key] = float(v)
    return out


def _epoch(v: Any) -> float:
    if hasattr(v, "timestamp"):
        return float(v.timestamp())
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def check_exposure(host: str, token: str | None, insecure: bool) -> None:
    """Refuse to serve a non-loopback address without a token, unless told to (then warn)."""
    import ipaddress

    if token:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False  # a host name: it may resolve to anything
    if loopback:
        return
    if not insecure:
        raise ConfigError(
            f"refusing to serve on {host} without a token: anyone who can reach it could post events and read stats",
            hint="set serve.token (or RTREC_TOKEN), bind 127.0.0.1, or pass --insecure to allow it anyway",
        )
    log.warning("serving on %s without a token (--insecure): every route is open to anyone who can reach it", host)


def serve(
    cfg: Config, *, host: str | None = None, port: int | None = None, demo: bool = False, insecure: bool = False
) -> int:
    """Run the daemon in this process (the body of ``rtrec serve``)."""
    check_exposure(host or cfg.serve.host, cfg.serve.token, insecure)
    # The learner holds the GIL in short Python stretches; a shorter switch interval keeps
    # recommend latency from queueing behind them (the default 5 ms would be a p99 floor).
    sys.setswitchinterval(0.001)
    try:
        import torch

        # Two cores: let the model use one, the HTTP server the other.
        if torch.get_num_threads() > 1 and (os.cpu_count() or 1) <= 4:
            torch.set_num_threads(1)
    except ImportError:
        pass
    # Bind first: a busy port should fail in a second, not after loading a model.
    sock, url = bind(host or cfg.serve.host, cfg.serve.port if port is None else port)
    try:
        daemon = Daemon(cfg, demo=demo)
    except BaseException:
        sock.close()
        raise
    return daemon.run(sock, url)


def bind(host: str, port: int) -> tuple[socket.socket, str]:
    """A listening socket on ``host:port`` (0 picks a free port) and the URL it serves."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio only sets TCP_NODELAY on accepted sockets that do, and without
    # it every response waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StorageError(
            f"cannot listen on {host}:{port}: {exc.strerror}", hint="pick another --port, or stop the other server"
        ) from None
    sock.listen(2048)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return sock, f"http://{shown}:{bound}"
