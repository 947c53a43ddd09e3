"""Checkpoint files of a home: written atomically, the newest readable one resumed, old ones pruned.

A checkpoint holds the whole learner with the last sequence number it learned; a restart
loads the newest file that reads and tails the log after that number, so every
acknowledged event is learned exactly once. The copy of the state is taken under the
learner's lock and the file written outside it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtrec.config import Config
from rtrec.contracts import CheckpointInfo
from rtrec.errors import CorruptDataError

if TYPE_CHECKING:
    from rtrec.events import EventLog
    from rtrec.learn import OnlineLearner

log = logging.getLogger("rtrec.serve")

__all__ = ["CHECKPOINT_DIR", "CheckpointStore", "checkpoint_files"]

CHECKPOINT_DIR = "checkpoints"
KEEP = 3
# At most this share of the time goes to writing checkpoints, and at most STALL_SHARE to
# holding the learner for their copies, within MAX_STRETCH times checkpoint_every_s (see
# CheckpointStore.interval).
WRITE_SHARE = 0.1
STALL_SHARE = 0.01
MAX_STRETCH = 10.0


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


class CheckpointStore:
    """The checkpoints of one home, and a record of the last one written (or resumed from)."""

    def __init__(self, home: Path, log_: EventLog) -> None:
        self.home = home
        self.folder = home / CHECKPOINT_DIR
        self.log = log_
        self.last: CheckpointInfo | None = None
        self.resumed_from: dict[str, Any] | None = None
        self._version = -1  # model version of the last checkpoint written or read
        self._seq = 0
        self._io = threading.Lock()  # one checkpoint written at a time

    def load(self, cfg: Config, text_dim: int) -> OnlineLearner:
        """The learner of the newest readable checkpoint, or a fresh one; temporary files of an
        interrupted checkpoint are removed first (never read)."""
        from rtrec.learn import OnlineLearner

        for tmp in self.folder.glob("*.ckpt.*.tmp"):
            log.info("removing %s, left by an interrupted checkpoint", tmp.name)
            tmp.unlink(missing_ok=True)
        for seq, path in checkpoint_files(self.home):
            try:
                learner = OnlineLearner.load(path, cfg)
            except (CorruptDataError, OSError) as exc:
                log.warning("checkpoint %s is unreadable (%s); trying an older one", path.name, exc)
                continue
            log.info("resumed from checkpoint %s (seq %d)", path.name, learner.last_seq)
            self.resumed_from = {"seq": int(learner.last_seq), "path": str(path), "file_seq": seq}
            self._version, self._seq = int(learner.model_version), int(learner.last_seq)
            return learner
        log.info("no checkpoint: cold start with embedded defaults")
        return OnlineLearner(cfg, text_dim=text_dim)

    def save(self, learner: OnlineLearner, lock: threading.RLock) -> CheckpointInfo | None:
        """Write a checkpoint if the model changed since the last one; return its record."""
        with self._io:
            return self._save(learner, lock)

    def replace_all(self, learner: OnlineLearner, lock: threading.RLock) -> int:
        """Write a checkpoint of the model as it is now and remove every other checkpoint file
        (after a forget: none may still hold the user); how many files were removed."""
        with self._io:
            with lock:
                learner.model_version += 1  # a new file, even when nothing else changed
            info = self._save(learner, lock)
            keep = Path(info["path"]) if info is not None else None
            old = [p for _, p in checkpoint_files(self.home) if p != keep]
            for p in old:
                p.unlink(missing_ok=True)
            return len(old)

    def _save(self, learner: OnlineLearner, lock: threading.RLock) -> CheckpointInfo | None:
        t0 = time.perf_counter()
        with lock:  # only the copy holds the learner up; the file is written while it learns on
            locked = time.perf_counter()
            version = int(learner.model_version)
            if version == self._version:
                return None
            seq = int(learner.last_seq)
            state = learner.snapshot()
        held = time.perf_counter() - locked
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"learner-{seq:012d}.ckpt"
        learner.save(path, state)
        del state
        size = path.stat().st_size
        learned, self._version, self._seq = max(seq - self._seq, 0), version, seq
        self.last = {
            "seq": seq,
            "path": str(path),
            "created_at": time.time(),
            "model_version": version,
            "seconds": time.perf_counter() - t0,
            "lock_seconds": held,
            "lock_wait_seconds": locked - t0,
            "bytes": size,
            "bytes_per_learned_event": size / learned if learned else None,
        }
        try:
            self.log.record_checkpoint(seq, str(path), version)
        except Exception as exc:  # the file is what restarts read; the table is a record
            log.warning("could not record checkpoint in the log: %s", exc)
        for _, old in checkpoint_files(self.home)[KEEP:]:
            old.unlink(missing_ok=True)
        log.info("checkpoint %s (model version %d)", path.name, version)
        return self.last

    def interval(self, every: float) -> float:
        """Seconds until the next checkpoint: ``every``, or longer when writing the last one took
        more than ``WRITE_SHARE`` of that (writing takes the interpreter from the learner), or
        when its copy held the learner for more than ``STALL_SHARE`` of it (everything acknowledged
        meanwhile waits, so each copy is a spike in the learner's lag; a hundredth of the time
        keeps them out of the lag's p99). The second stretch stops at ``MAX_STRETCH`` x ``every``,
        which bounds what a restart after a crash has to learn again from the log."""
        if self.last is None:
            return every
        written = float(self.last.get("seconds") or 0.0) / WRITE_SHARE
        held = min(float(self.last.get("lock_seconds") or 0.0) / STALL_SHARE, MAX_STRETCH * every)
        return max(every, written, held)

    def age(self) -> float:
        created = self.last.get("created_at") if self.last is not None else None
        return time.time() - created if created is not None else math.nan

    def info(self) -> CheckpointInfo | None:
        """The last checkpoint written, or else the one resumed from, with its age."""
        ck = self.last
        if ck is None and self.resumed_from is not None:
            ck = CheckpointInfo(seq=self.resumed_from["seq"], path=self.resumed_from["path"], created_at=None)
            p = Path(ck["path"])
            if p.exists():
                ck["created_at"] = p.stat().st_mtime
        if ck is None:
            return None
        out = CheckpointInfo(**ck)
        created = out.get("created_at")
        if created:
            out["age_s"] = time.time() - created
        return out
