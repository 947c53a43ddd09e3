"""The learner worker: the only writer of the model, tailing the event log in sequence order.

It learns each tailed batch with the same code as ``rtrec replay``, hands catalog and text
embedding updates to the learner between batches, expires pending impressions by the
clock, keeps the bookkeeping of freshness (from acknowledgement to learned) and lag, and
sets aside (quarantines) what it cannot learn, so that learning never stops.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from rtrec.config import Config
from rtrec.errors import InvalidInputError, Overloaded, RtrecError
from rtrec.serve.metrics import Meters

if TYPE_CHECKING:
    from rtrec.events import EventLog
    from rtrec.learn import OnlineLearner

log = logging.getLogger("rtrec.serve")

__all__ = ["InFlight", "LearnerWorker"]

TAIL_MIN = 64
EXPIRE_EVERY_S = 1.0
# How long the learner waits, before each learn call, for recommend requests in flight to
# finish: scoring waits for the model lock, which a learn call holds for several milliseconds.
# Short and bounded: at 50 ms (with 10 ms for ingests) a steady stream of requests held the
# learner to about 9,000 events/s under bench/load.py; it must slow learning, never stop it.
YIELD_TO_RECOMMEND_S = 0.005
# On SIGTERM the learner learns on for at most this long, then the daemon checkpoints and exits.
SHUTDOWN_LEARN_S = 3.0
# While a backlog waits, a learn step takes up to this many times ``learner.batch_size`` events.
MAX_STEP_FACTOR = 8
# ...and at most this share of ``serve.max_lag_s`` at the rate the learner sustains: what arrives
# during a step waits for all of it, so a step sized in events alone passes the lag bound when
# each event costs more (once impressions expire, every event is learned about twice).
STEP_LAG_SHARE = 0.5
# Weight of the newest batch in the learner's busy-rate estimate (about the last ten batches).
CAPACITY_WEIGHT = 0.1
# How long a posted batch may wait, from its arrival, for the learner to make room before it is
# refused with 429. Waiting (not refusing at once) keeps the learner fed: a refused producer
# comes back after a whole second (Retry-After), and meanwhile the learner would run dry.
ADMIT_WAIT_S = 1.0


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


class LearnerWorker:
    """Runs :meth:`run` on its own thread; other threads call :meth:`committed` and read the lag."""

    def __init__(
        self,
        cfg: Config,
        learner: OnlineLearner,
        log_: EventLog,
        meters: Meters,
        model_lock: threading.RLock,
        recommending: InFlight,
    ) -> None:
        self.cfg = cfg
        self.learner = learner
        self.log = log_
        self.meters = meters
        self.lock = model_lock
        self.recommending = recommending
        self.error: str | None = None
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.log_seq = int(log_.last_seq() or 0)
        # (last_seq, monotonic ack time) per committed batch, oldest first; acks learned since
        # the last recommend (for the "reflected in a recommendation" freshness).
        self._acks: collections.deque[tuple[int, float]] = collections.deque()
        self._learned: collections.deque[float] = collections.deque(maxlen=100_000)
        self._ack_lock = threading.Lock()
        self._catalog: Any = None  # items to hand to the learner
        self._embeddings: tuple[list[str], Any] | None = None
        self.on_embeddings_refused: Callable[[str], None] = lambda _msg: None
        self.on_learned: Callable[[Any], None] = lambda _batch: None  # each batch, once learned
        learner.yield_point = self.yield_to_requests
        # Held while a batch is learned, and by whoever must change the log or the model with
        # the learner stepped aside (a forget, a rewrite of the database): they bump
        # ``generation``, and a batch read before that is dropped and read again.
        self._gate = threading.Lock()
        self.generation = 0
        # Events and seconds of recent learning while there was work (decayed sums): their ratio
        # is what the learner sustains now, contention included, for admission control.
        self._busy = (0.0, 0.0)
        self._progress = threading.Condition()  # notified after each learned batch

    # -- called from other threads ---------------------------------------------------------------
    def committed(self, accepted: int, last_seq: int | None) -> None:
        """Events up to ``last_seq`` were committed (acknowledged now): wake up and time them."""
        if accepted and last_seq is not None:
            with self._ack_lock:
                self.log_seq = max(self.log_seq, int(last_seq))
                self._acks.append((int(last_seq), time.monotonic()))
            self.wake.set()

    def set_catalog(self, items: Any) -> None:
        self._catalog = items
        self.wake.set()

    def set_embeddings(self, ids: list[str], matrix: Any) -> None:
        self._embeddings = (ids, matrix)
        self.wake.set()

    def lag(self) -> tuple[int, float]:
        """Committed events not learned yet, and the age of the oldest acknowledged one (seconds)."""
        with self._ack_lock:
            oldest = self._acks[0][1] if self._acks else None
            lag = max(0, self.log_seq - int(self.learner.last_seq))
        return lag, (time.monotonic() - oldest) if oldest is not None else 0.0

    def capacity(self) -> float | None:
        """Events per second the learner has sustained lately while it had work (None before any)."""
        events, seconds = self._busy
        return events / seconds if seconds > 0 else None

    def behind(self, incoming: int = 0, slack_s: float = 0.0) -> tuple[bool, int, float]:
        """Whether the learner is too far behind to take ``incoming`` more events, and by how much
        (events, seconds). It is when more than ``serve.max_lag_events`` would wait, when the oldest
        waiting event is older than ``serve.max_lag_s`` (plus ``slack_s``), or when learning what
        waits and the incoming events would take longer than that at the rate the learner
        sustains now: admission looks ahead, so that the lag stays under the bound rather than
        passing it first. With nothing waiting, a batch is always taken."""
        lag_events, lag_s = self.lag()
        sc = self.cfg.serve
        budget = sc.max_lag_s + slack_s
        if lag_s > budget:
            return True, lag_events, lag_s
        if lag_events == 0:
            return False, 0, lag_s
        rate = self.capacity()
        waiting = lag_events + incoming
        return waiting > sc.max_lag_events or (rate is not None and waiting / rate > budget), lag_events, lag_s

    def admit(self, incoming: int, deadline: float) -> tuple[bool, int, float]:
        """Wait until the learner can take ``incoming`` events (see :meth:`behind`) or the
        monotonic ``deadline`` passes; :meth:`behind`'s answer then."""
        while True:
            verdict = self.behind(incoming)
            left = deadline - time.monotonic()
            if not verdict[0] or left <= 0 or self.stop_event.is_set():
                return verdict
            with self._progress:
                self._progress.wait(min(left, 0.05))

    def admit_or_refuse(self, incoming: int = 0, arrived: float | None = None) -> None:
        """Raise :class:`Overloaded` if the learner cannot take ``incoming`` more events in time: at
        once (``arrived`` None) only when waiting could not help; else after waiting for room until
        ``ADMIT_WAIT_S`` after the request ``arrived`` (monotonic seconds)."""
        if arrived is None:
            behind, lag_events, lag_s = self.behind(incoming, slack_s=ADMIT_WAIT_S)
        else:
            behind, lag_events, lag_s = self.admit(incoming, arrived + ADMIT_WAIT_S)
        if behind:
            self.meters.throttled.inc()
            rate = self.capacity() or max(self.meters.learn_rate.rate(), 1.0)
            raise Overloaded(
                f"the learner is {lag_events} events ({lag_s:.2f} s) behind: retry shortly",
                retry_after_s=min(30.0, max(1.0, (lag_events + incoming) / rate)),
                hint="nothing of this batch was stored; send it again after Retry-After seconds",
            )

    def take_learned(self) -> list[float]:
        """Acknowledgement times of batches learned since the last call."""
        with self._ack_lock:
            learned, self._learned = list(self._learned), collections.deque(maxlen=100_000)
        return learned

    def yield_to_requests(self) -> None:
        """Let recommend requests in progress run before the learner goes on."""
        if not self.stop_event.is_set():
            self.recommending.wait_idle(YIELD_TO_RECOMMEND_S)

    @contextlib.contextmanager
    def aside(self) -> Iterator[None]:
        """Run the block with the learner stepped aside; batches it read before are read again."""
        with self._gate:
            self.generation += 1
            yield

    # -- the learner thread ----------------------------------------------------------------------
    def run(self) -> None:
        last_expire = 0.0
        while True:
            stopping = self.stop_event.is_set()
            self.wake.wait(timeout=0.05)
            self.wake.clear()
            try:
                self.apply_side_info()
                self.learn_available(drain=stopping)
                now = time.time()
                if now - last_expire >= EXPIRE_EVERY_S:
                    last_expire = now
                    self.yield_to_requests()
                    with self.lock:
                        self.learner.expire(now)
                self.error = None
            except RtrecError as exc:
                self._failed(exc)
            except Exception as exc:  # keep serving; the error shows in /healthz and the logs
                log.exception("learner batch failed")
                self._failed(exc)
            if stopping:
                return

    def _failed(self, exc: Exception) -> None:
        self.meters.learn_errors.inc()
        self.error = f"{type(exc).__name__}: {exc}"
        time.sleep(1.0)

    def apply_side_info(self) -> None:
        items, self._catalog = self._catalog, None
        if items is not None:
            with self.lock:
                self.learner.set_catalog(items)
        pending, self._embeddings = self._embeddings, None
        if pending is not None:
            try:
                with self.lock:
                    self.learner.set_item_embeddings(*pending)
            except InvalidInputError as exc:  # e.g. a checkpoint from another text model
                self.on_embeddings_refused(f"not used by the model: {exc}")
                log.warning("item embeddings not used: %s", exc)

    def learn_available(self, drain: bool = False) -> int:
        """Learn what the log holds past the learner. Stopping, it learns on for at most
        ``SHUTDOWN_LEARN_S`` (``drain``) or stops after the batch in hand; what is left is
        learned after a restart, from the checkpoint, exactly once."""
        total = 0
        until = time.monotonic() + SHUTDOWN_LEARN_S
        while True:
            got, stale = 0, False
            size = self.step_size()
            generation = self.generation
            mark = time.perf_counter()
            for batch in self.log.tail(int(self.learner.last_seq), max_rows=size * 8, batch_size=size):
                if self.stop_event.is_set() and (not drain or time.monotonic() > until):
                    return total
                if batch.num_rows == 0:
                    continue
                self.yield_to_requests()
                t0 = time.perf_counter()
                with self._gate:
                    stale = self.generation != generation
                    if stale:  # the log changed under this read (a forget): read it again
                        break
                    self._learn_one(batch, size)
                now = time.perf_counter()
                self.meters.lat_learn_batch.observe(now - t0)
                self._count_busy(batch.num_rows, now - mark)
                mark = now
                self._observed(batch)
                got += batch.num_rows
                self._learned_batch(batch.num_rows)
            total += got
            if stale:
                continue
            if got == 0:
                return total
            if not drain and self.stop_event.is_set():
                return total
            self.apply_side_info()

    def _count_busy(self, events: int, seconds: float) -> None:
        events0, seconds0 = self._busy
        w = CAPACITY_WEIGHT if seconds0 > 0 else 1.0
        self._busy = ((1 - w) * events0 + w * events, (1 - w) * seconds0 + w * seconds)

    def step_size(self) -> int:
        """Events per learn step: ``learner.batch_size`` while the learner keeps up, up to
        ``MAX_STEP_FACTOR`` times that while a backlog waits, but no more than the learner
        learns in ``STEP_LAG_SHARE`` of ``serve.max_lag_s`` at its measured rate (never under
        ``learner.batch_size``). A step has a fixed cost of tens of milliseconds, so under load
        larger steps learn more per second (in one process on two cores, 26,800 events/s in steps
        of 1,024 and 64,100 in steps of 8,192); but the events that arrive during a step wait for
        all of it, so its length is bounded by time, not by events alone."""
        base = max(TAIL_MIN, self.cfg.learner.batch_size)
        size = min(max(base, self.lag()[0]), base * MAX_STEP_FACTOR)
        rate = self.capacity()
        if rate is not None:
            size = min(size, max(base, int(rate * self.cfg.serve.max_lag_s * STEP_LAG_SHARE)))
        return int(size)

    def _learn_one(self, batch: Any, chunk: int | None = None) -> None:
        """Learn one tailed batch. A batch the learner fails on is quarantined (its events stay in
        the log, recorded with the reason in ``quarantined_events``) and learning goes on after it."""
        try:
            with self.lock:
                res = self.learner.learn(batch, chunk=chunk)
            bad = res.quarantined
            if res.flagged:
                try:
                    self.log.flag(res.flagged)
                except Exception as exc:  # the learner's counts still show them
                    log.warning("could not record flagged events: %s", exc)
        except Exception as exc:
            seqs = batch.column("seq").to_numpy()
            log.exception("learning events %d..%d failed; quarantining them", int(seqs.min()), int(seqs.max()))
            with self.lock:
                self.learner.skip(seqs)
            reason = f"learner failed on this batch: {type(exc).__name__}: {exc}"
            bad = [(int(s), reason) for s in seqs.tolist()]
        if bad:
            self.meters.quarantined.inc(len(bad))
            try:
                self.log.quarantine(bad)
            except Exception as exc:  # the count above still shows them
                log.warning("could not record quarantined events: %s", exc)

    def _observed(self, batch: Any) -> None:
        try:
            self.on_learned(batch)
        except Exception as exc:  # an observer never stops learning
            log.warning("an observer of learned events failed: %s", exc)

    def _learned_batch(self, n: int) -> None:
        self.meters.learned.inc(n)
        self.meters.learn_rate.mark(n)
        seq = int(self.learner.last_seq)
        now = time.monotonic()
        with self._ack_lock:
            self.log_seq = max(self.log_seq, seq)
            while self._acks and self._acks[0][0] <= seq:
                _, ack = self._acks.popleft()
                self.meters.lat_learned.observe(now - ack)
                self._learned.append(ack)
        with self._progress:
            self._progress.notify_all()
