"""The daemon: one process that owns the event log and the model, serving them over HTTP.

``Daemon`` wires the parts together and runs the lifecycle; each part has one job:

- :class:`~rtrec.serve.worker.LearnerWorker` (thread ``learner``): the only writer of the
  model. It tails the ``events`` table after ``learner.last_seq``, learns each batch (the
  same code as ``rtrec replay``), applies catalog and text-embedding updates handed to it,
  expires pending impressions and quarantines what it cannot learn.
- :class:`~rtrec.serve.text_worker.TextWorker` (thread ``encoder``): encodes new or changed
  catalog items (on the GPU when there is one) and hands the embeddings to the learner.
- :class:`~rtrec.serve.checkpoints.CheckpointStore` (thread ``checkpointer``, which also
  samples the dashboard series and records drift alarms): checkpoint files.
- :class:`~rtrec.serve.catalog.Catalog`: an immutable snapshot, swapped when items change.
- :class:`~rtrec.serve.ranker.Ranker`: recommend, reading the model and the snapshot.
- :mod:`rtrec.serve.status` and :class:`~rtrec.serve.metrics.Meters`: what is reported.
- the uvicorn HTTP server (main thread), the inbox (thread ``inbox``) and, with ``--demo``,
  simulated users (thread ``demo``).

Exactly-once learning: an event is acknowledged only once committed with a sequence
number; a checkpoint stores the model together with the ``last_seq`` it has learned, and
a restart loads the newest readable checkpoint and tails after its ``last_seq``. Whatever
was learned after that checkpoint is forgotten with the process and learned again.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from rtrec import __version__
from rtrec.config import Config
from rtrec.contracts import CheckpointInfo, Health, StatsResponse
from rtrec.events.rows import simple_events
from rtrec.serve import inbox as inbox_mod
from rtrec.serve import status
from rtrec.serve.catalog import Catalog
from rtrec.serve.checkpoints import CheckpointStore
from rtrec.serve.fresh import FreshUsers, committed
from rtrec.serve.gcwatch import GcWatch
from rtrec.serve.metrics import SERIES_STEP_S, Meters
from rtrec.serve.privacy import HomePrivacy, pseudonymizer
from rtrec.serve.ranker import Ranker
from rtrec.serve.text_worker import TextWorker
from rtrec.serve.worker import InFlight, LearnerWorker

log = logging.getLogger("rtrec.serve")

RUNTIME_FILE = "serve.json"


class Daemon:
    """The long-running service. ``Daemon(cfg).run(sock, url)`` serves until SIGTERM/SIGINT."""

    def __init__(self, cfg: Config, *, demo: bool = False, demo_rate: float = 20.0) -> None:
        from rtrec.events import EventLog

        self.cfg = cfg
        self.home = cfg.home
        self.home.mkdir(parents=True, exist_ok=True)
        sc = cfg.serve
        self.max_body_bytes, self.max_batch, self.token = sc.max_body_bytes, sc.max_batch, sc.token
        self.read_token = sc.read_token
        self.demo, self.demo_rate = demo, demo_rate
        self.started_at = time.time()
        self.url: str | None = None
        self.server: Any = None
        self.inbox_counts = {"done": 0, "rejected": 0}
        self.http_counts: dict[str, int] = {"refused": 0, "timed_out": 0}
        self.restarts: dict[str, int] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()  # every background loop but the learner's

        self.log = EventLog.open(cfg.db_path, cfg.events, pseudonymize=pseudonymizer(cfg))
        self.meters = Meters()
        self.gc_watch = GcWatch(self.meters.registry)  # installed by the process that serves
        self.text = TextWorker(cfg, self.log)  # before the learner: a cold start needs the width
        self.checkpoints = CheckpointStore(self.home, self.log)
        self.learner = self.checkpoints.load(cfg, self.text.dim)
        self.model_lock = threading.RLock()  # held by whoever mutates or copies the model
        self.recommending = InFlight()
        self.worker = LearnerWorker(cfg, self.learner, self.log, self.meters, self.model_lock, self.recommending)
        self.worker.on_embeddings_refused = lambda msg: self.text.status.update({"status": msg})
        self.catalog = Catalog(self.log.items(), 0)
        self.fresh = FreshUsers(self.learner.user_state)
        self.privacy = HomePrivacy(
            cfg, self.log, self.checkpoints, lambda: self.learner, self.model_lock, self.worker.aside
        )
        self.privacy.on_forget.append(self.fresh.forget)
        self.privacy.compact_if_due(force=True)  # a forget the last run did not compact
        self.ranker = Ranker(
            cfg,
            self.learner,
            lambda: self.catalog,
            self.fresh.user_state,
            self.text,
            self.meters,
            self.worker.take_learned,
        )
        self.worker.on_learned = self.ranker.ope.observe
        self._alarms_stored = len(self.learner.drift_alarms)
        self.meters.quarantined.inc(self.log.count_quarantined())
        self._gauges()

    def _gauges(self) -> None:
        r, w = self.meters.registry, self.worker
        r.gauge("learner_lag_events", "Committed events not learned yet.", lambda: w.lag()[0])
        r.gauge("learner_lag_seconds", "Age of the oldest committed event not learned yet.", lambda: w.lag()[1])
        r.gauge("model_version", "Model updates so far.", lambda: self.learner.model_version)
        r.gauge("learned_seq", "Sequence number of the last learned event.", lambda: self.learner.last_seq)
        r.gauge("log_seq", "Sequence number of the last committed event.", lambda: w.log_seq)
        r.gauge("catalog_items", "Items in the catalog.", lambda: len(self.catalog.ids))
        r.gauge("text_encoder_queue", "Catalog items waiting for the text encoder.", lambda: self.text.status["queue"])
        r.gauge("checkpoint_age_seconds", "Seconds since the last checkpoint.", self.checkpoints.age)
        r.gauge("drift_alarms", "Drift alarms raised so far.", lambda: len(self.learner.drift_alarms))

    # ----------------------------------------------------------------- threads

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
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2.0, 60.0)

        return run

    def start_background(self) -> None:
        """Start every thread except the HTTP server."""
        self._items_changed()
        self._start_thread("stored-ids", self.log.warm_up)  # else the first POST waits for it
        self._start_thread("learner", self.worker.run)
        if self.text.encoder is not None:
            self._start_thread(
                "encoder", lambda: self.text.run(self._stop, lambda: self.catalog.items, self.worker.set_embeddings)
            )
        self._start_thread("checkpointer", self._checkpoint_loop)
        self._start_thread("inbox", self._inbox_loop)
        if self.demo:
            from rtrec.serve.demo import play

            self._start_thread("demo", lambda: play(self, self._stop, rate=self.demo_rate))

    def learn_now(self) -> int:
        """Learn, on this thread, what the log holds past the model (tools and tests); how many events."""
        self._items_changed()
        self.worker.apply_side_info()
        return self.worker.learn_available()

    # ------------------------------------------------------------------ ingest

    def check_capacity(self, incoming: int = 0, arrived: float | None = None) -> None:
        """Admission control for posted events: :meth:`LearnerWorker.admit_or_refuse`."""
        self.worker.admit_or_refuse(incoming, arrived)

    def simple_events(self, body: bytes) -> pa.Table | None:
        """A JSON array of events as the log's table when every row is simple and valid (parsed
        natively, see :func:`rtrec.events.rows.simple_events`); None: parse and check row by row."""
        return simple_events(body, self.log.validator, self.max_batch)

    def ingest_events(self, rows: list[Any] | pa.Table, source: str = "http") -> dict[str, Any]:
        """Commit ``rows`` and answer as ``POST /v1/events`` does."""
        t0 = time.perf_counter()
        s = self.log.ingest(rows, source=source)  # every row checked on its own; bad ones stored with a reason
        self.meters.lat_ingest.observe(time.perf_counter() - t0)
        self._committed(s)
        if s.accepted:
            self.fresh.note(committed(rows, {int(r.index) for r in s.rejected}), self.privacy.stored_id)
        out: dict[str, Any] = {
            "accepted": int(s.accepted),
            "duplicates": int(s.duplicates),
            "rejected": [{"index": int(r.index), "reason": str(r.reason)} for r in s.rejected],
        }
        if s.accepted:
            out["first_seq"], out["last_seq"] = s.first_seq, s.last_seq
        return out

    def _committed(self, s: Any) -> None:
        m = self.meters
        m.accepted.inc(int(s.accepted))
        m.duplicates.inc(int(s.duplicates))
        m.rejected.inc(len(s.rejected))
        if s.accepted:
            m.ingest_rate.mark(int(s.accepted))
        self.worker.committed(int(s.accepted), s.last_seq)

    def upsert_items(self, rows: list[Any]) -> dict[str, Any]:
        """Write the valid items of ``rows``; each bad row is answered with its reason, the rest stored."""
        from rtrec.events import Rejected

        bad: list[Rejected] = []
        n = int(self.log.upsert_items(rows, rejected=bad)) if rows else 0
        self.meters.items.inc(n)
        if n:
            self._items_changed()
        return {"upserted": n, "rejected": [{"index": r.index, "reason": r.reason} for r in bad]}

    def _items_changed(self) -> None:
        """Swap in a new catalog snapshot; the learner and the encoder take it up."""
        self.catalog = Catalog(self.log.items(), self.catalog.version + 1)
        self.worker.set_catalog(self.catalog.items)
        self.text.items_changed.set()

    # ------------------------------------------------------- recommend, reports

    def recommend(self, user_id: str, k: int = 10, **request: Any) -> dict[str, Any]:
        """A slate for ``user_id``; ``request`` as :meth:`rtrec.serve.ranker.Ranker.recommend` takes it."""
        with self.recommending:
            return self.ranker.recommend(self.privacy.stored_id(user_id), k, **request)

    def serves_inline(self, user_id: str, candidates: list[str] | None, **request: Any) -> bool:
        """Whether a recommend is cheap enough to answer on the event loop (:meth:`Ranker.inline`)."""
        return self.ranker.inline(self.privacy.stored_id(user_id), candidates, **request)

    def forget(self, user_id: str) -> dict[str, Any]:
        """Erase ``user_id`` everywhere (``DELETE /v1/users/{user_id}``; see :mod:`rtrec.serve.privacy`)."""
        return self.privacy.forget(user_id)

    def similar(self, item_id: str, k: int = 10) -> dict[str, Any]:
        with self.recommending:
            return self.ranker.similar(item_id, k)

    def health(self) -> Health:
        return status.health(self)

    def stats(self) -> StatsResponse:
        return status.stats(self)

    def metrics_text(self) -> str:
        return status.metrics_text(self)

    # ------------------------------------------------- checkpoints and inbox

    def checkpoint(self) -> CheckpointInfo | None:
        """Record new drift alarms, then save the model if it changed since the last checkpoint; return the record."""
        self._store_alarms()
        return self.checkpoints.save(self.learner, self.model_lock)

    def _checkpoint_loop(self) -> None:
        every = self.cfg.serve.checkpoint_every_s
        next_ckpt = time.monotonic() + every
        while not self._stop.wait(timeout=min(SERIES_STEP_S, every, 1.0)):
            self._sample_series()
            self._store_alarms()
            self._upkeep()
            if time.monotonic() >= next_ckpt:
                next_ckpt = time.monotonic() + self.checkpoints.interval(every)
                try:
                    self.checkpoint()
                except Exception:
                    log.exception("checkpoint failed")

    def _upkeep(self) -> None:
        try:
            self.privacy.tick()
        except Exception:
            log.exception("privacy upkeep (compaction, retention) failed")

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

    def _sample_series(self) -> None:
        m = self.meters
        m.series["ingest"].set(m.ingest_rate.rate())
        m.series["learn"].set(m.learn_rate.rate())
        for key, value in status.current_quality(self.learner.stats()).items():
            m.series[key].set(float(value))  # type: ignore[arg-type]

    def _inbox_loop(self) -> None:
        folder = self.home / "inbox"
        inbox_mod.ensure_dirs(folder)
        while not self._stop.wait(timeout=self.cfg.serve.inbox_poll_s):
            for path, items in inbox_mod.pending(folder):
                if self._stop.is_set():
                    return
                if not items and self.worker.behind()[0]:
                    break  # backpressure: event files wait in the inbox until the learner catches up
                with self.privacy.inbox_lock:
                    out = inbox_mod.process(path, items, self._ingest_file, folder)
                self.inbox_counts["done" if out.ok else "rejected"] += 1

    def _ingest_file(self, path: Path, items: bool) -> Any:
        if items:
            n = int(self.log.ingest_file(path, items=True).accepted)
            self.meters.items.inc(n)
            self._items_changed()
            return n
        s = self.log.ingest_file(path, items=False)
        self._committed(s)
        return s

    # --------------------------------------------------------------- lifecycle

    def _write_runtime(self) -> None:
        info = {"pid": os.getpid(), "url": self.url, "started_at": self.started_at, "token": bool(self.token)}
        tmp = self.home / (RUNTIME_FILE + ".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.home / RUNTIME_FILE)

    def run(self, sock: socket.socket, url: str) -> int:
        """Serve on the bound ``sock`` until SIGTERM/SIGINT, then shut down cleanly; return the exit status."""
        import uvicorn

        from rtrec.serve.api import create_app
        from rtrec.serve.protocol import RepeatFilter, guarded_protocol, raise_file_limit

        self.url = url
        # uvicorn re-raises the signal that stopped it once it is done; these handlers catch
        # that (and any later one) so that the drain and checkpoint below still run.
        signal.signal(signal.SIGTERM, lambda *_: None)
        signal.signal(signal.SIGINT, lambda *_: None)
        self.start_background()
        sc = self.cfg.serve
        soft, _ = raise_file_limit()
        if soft < sc.max_connections + 64:
            log.warning("open-file limit %d is low for serve.max_connections = %d", soft, sc.max_connections)
        logging.getLogger("asyncio").addFilter(RepeatFilter())
        config = uvicorn.Config(
            create_app(self),
            http=guarded_protocol(sc.request_timeout_s, sc.max_connections, self.http_counts),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
            timeout_keep_alive=min(30, max(1, int(sc.request_timeout_s))),
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self._write_runtime()
        log.info(
            "rtrec %s serving on %s (home %s, model version %d, learned seq %d, log seq %d)",
            __version__,
            self.url,
            self.home,
            self.learner.model_version,
            self.learner.last_seq,
            self.worker.log_seq,
        )
        try:
            self.server.run(sockets=[sock])
        finally:
            self.shutdown()
        return 0

    def shutdown(self) -> None:
        """Stop the background threads (the learner learns on for a few seconds), checkpoint, close the log."""
        log.info("shutting down: learning what is queued, then checkpointing")
        self._stop.set()
        self.worker.stop_event.set()
        self.worker.wake.set()
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
            self.privacy.compact_if_due(force=True)
        except Exception:
            log.exception("rewriting the database after a forget failed; it runs again at start")
        try:
            self.log.close()
        finally:
            (self.home / RUNTIME_FILE).unlink(missing_ok=True)
        log.info("stopped at model version %d, learned seq %d", self.learner.model_version, self.learner.last_seq)
