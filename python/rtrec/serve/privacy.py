"""Forget, retention and compaction for a home: the daemon's and ``rtrec forget``'s one code path.

A forget erases a user from, in order: the event log (events, rejected rows that name the
user, and the records of the deleted events), the learner (:func:`rtrec.learn.forget.forget_user`),
the inbox's files, and the checkpoints (a new one is written from the erased model and every
older file is removed). It is recorded in ``forget_audit`` by a salted hash of the id, never the
id. The database file still holds the deleted rows' bytes in its free pages until it is
rewritten (:meth:`rtrec.events.EventLog.compact`): within ``privacy.compact_after_s``, at
shutdown, at start when a forget was not yet compacted, and at once by ``rtrec forget``.

While a forget runs, the learner steps aside (``gate``): a batch it read before the delete is
read again after it, so none of the user's events is learned after they are forgotten.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from rtrec.config import Config
from rtrec.contracts import PrivacyStatus
from rtrec.errors import InvalidInputError
from rtrec.privacy import Pseudonymizer, salted_hash, scrub_files

if TYPE_CHECKING:
    from rtrec.events import EventLog
    from rtrec.learn import OnlineLearner
    from rtrec.serve.checkpoints import CheckpointStore

log = logging.getLogger("rtrec.serve")

__all__ = ["HomePrivacy", "forget_offline", "pseudonymizer"]

INBOX_SWEEP_S = 10.0


def pseudonymizer(cfg: Config) -> Pseudonymizer | None:
    """The id mapping ``privacy.pseudonymize`` asks for (None when off)."""
    pc = cfg.privacy
    return Pseudonymizer(pc.id_key) if pc.pseudonymize and pc.id_key else None


class HomePrivacy:
    """Forget, retention and compaction over one home's log, learner, inbox and checkpoints."""

    def __init__(
        self,
        cfg: Config,
        log_: EventLog,
        checkpoints: CheckpointStore,
        learner: Callable[[], OnlineLearner | None],
        model_lock: threading.RLock,
        gate: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        self.cfg = cfg
        self.log = log_
        self.checkpoints = checkpoints
        self.learner = learner
        self.model_lock = model_lock
        self.gate = gate
        self.pseudo = pseudonymizer(cfg)
        self.inbox = cfg.home / "inbox"
        self.inbox_lock = threading.Lock()  # held while an inbox file is processed or scrubbed
        self.on_forget: list[Callable[[str], None]] = []  # per-user caches elsewhere
        self.forgotten = 0
        self.retained = {"runs": 0, "events": 0, "files": 0}  # since start
        self.retained_at: float | None = None
        self._forget_lock = threading.Lock()
        # When the oldest forget not yet compacted away happened (the audit table says, at start).
        self._uncompacted_since = log_.needs_compaction()
        self._next_retention = 0.0
        self._next_sweep = 0.0

    def stored_id(self, user_id: str) -> str:
        """What the log and the model hold for ``user_id``: its pseudonym, or itself."""
        return self.pseudo(user_id) if self.pseudo is not None else user_id

    # -- forget --------------------------------------------------------------------------------
    def forget(self, user_id: str) -> dict[str, Any]:
        """Erase ``user_id`` everywhere this home keeps it; what was removed."""
        user_id = str(user_id)
        limit = self.cfg.events.max_id_chars
        if not user_id.strip() or len(user_id) > limit:
            raise InvalidInputError(f"user_id: must be a non-empty string of at most {limit} characters")
        sid = self.stored_id(user_id)
        ids = [sid] if sid == user_id else [sid, user_id]
        with self._forget_lock:
            with self.gate():  # the learner steps aside; what it had read is read again
                learner = self.learner()
                with self.model_lock:
                    erased = self.log.forget_users(ids, int(learner.last_seq) if learner is not None else 0)
                    model = learner.forget_user(sid, erased["learned_events"]) if learner is not None else None
                for hook in self.on_forget:
                    hook(sid)
                with self.inbox_lock:
                    files = scrub_files(self.inbox, ids)
                rewritten = self.checkpoints.replace_all(learner, self.model_lock) if learner is not None else 0
            counts = {
                "events": erased["events"],
                "rejected": erased["rejected"],
                "quarantined": erased["quarantined"],
                "examples": model["examples"] if model else 0,
                "pending": model["pending"] if model else 0,
                "replay_rows": model["replay_rows"] if model else 0,
                "checkpoints": rewritten,
                "files": files,
            }
            self.log.record_forget(salted_hash(self.log.salt(), user_id), counts)
            self.forgotten += 1
            if self._uncompacted_since is None:
                self._uncompacted_since = time.time()
        log.info("forgot a user: %s", counts)
        return {
            "user_id": user_id,
            "known": bool(erased["events"] or (model and model["known"])),
            **counts,
            "compact_within_s": self.cfg.privacy.compact_after_s,
        }

    # -- upkeep --------------------------------------------------------------------------------
    def compact_if_due(self, *, now: float | None = None, force: bool = False) -> bool:
        """Rewrite the database file when a forget is older than ``privacy.compact_after_s``
        (``force``: any forget not yet compacted); whether it did."""
        since = self._uncompacted_since
        if since is None:
            return False
        if not force and (now if now is not None else time.time()) - since < self.cfg.privacy.compact_after_s:
            return False
        t0 = time.perf_counter()
        with self.gate():
            self.log.compact()
        self._uncompacted_since = None
        log.info("rewrote the database after a forget in %.2f s", time.perf_counter() - t0)
        return True

    def tick(self, now: float | None = None) -> None:
        """Compaction, retention and the inbox sweep, each when due (the daemon calls this often)."""
        now = time.time() if now is None else now
        self.compact_if_due(now=now)
        pc = self.cfg.privacy
        if pc.retention_days is not None and now >= self._next_retention:
            self._next_retention = now + pc.retention_every_s
            self.retain(now)
        if pc.inbox_keep_days is not None and now >= self._next_sweep:
            self._next_sweep = now + INBOX_SWEEP_S
            self.sweep_inbox(now)

    def retain(self, now: float) -> None:
        """Drop learned events older than ``privacy.retention_days`` from the log."""
        days = self.cfg.privacy.retention_days
        learner = self.learner()
        if days is None or learner is None:
            return
        got = self.log.drop_before(now - days * 86400.0, int(learner.last_seq))
        self.retained["runs"] += 1
        self.retained["events"] += got["events"]
        self.retained_at = now
        if got["events"] or got["rejected"]:
            log.info("retention dropped %d events and %d rejected rows", got["events"], got["rejected"])

    def sweep_inbox(self, now: float) -> int:
        """Delete processed inbox files older than ``privacy.inbox_keep_days``; how many."""
        days = self.cfg.privacy.inbox_keep_days
        if days is None:
            return 0
        n = 0
        with self.inbox_lock:
            for sub in ("done", "rejected"):
                folder = self.inbox / sub
                for p in folder.iterdir() if folder.is_dir() else ():
                    with contextlib.suppress(OSError):
                        if p.is_file() and now - p.stat().st_mtime >= days * 86400.0:
                            p.unlink()
                            n += 1
        self.retained["files"] += n
        return n

    def status(self) -> PrivacyStatus:
        pc = self.cfg.privacy
        return {
            "pseudonymize": pc.pseudonymize,
            "retention_days": pc.retention_days,
            "inbox_keep_days": pc.inbox_keep_days,
            "forgotten": self.forgotten,
            "compaction_pending": self._uncompacted_since is not None,
            "retention": {**self.retained, "last_at": self.retained_at},
        }


def forget_offline(cfg: Config, user_id: str) -> dict[str, Any]:
    """Forget ``user_id`` in a home no daemon is serving, and rewrite its database file at once."""
    from rtrec.events import EventLog
    from rtrec.serve.checkpoints import CheckpointStore, checkpoint_files

    log_ = EventLog.open(cfg.db_path, cfg.events, pseudonymize=pseudonymizer(cfg))
    try:
        store = CheckpointStore(cfg.home, log_)
        learner = store.load(cfg, 0) if checkpoint_files(cfg.home) else None
        keeper = HomePrivacy(cfg, log_, store, lambda: learner, threading.RLock())
        out = keeper.forget(user_id)
        keeper.compact_if_due(force=True)
        out["compact_within_s"] = 0.0
        return out
    finally:
        log_.close()
