"""HTTP connections that cannot pin the daemon down: a deadline per request and a cap on connections.

uvicorn times out idle keep-alive connections, but not a connection that opens and sends
nothing, nor a request whose headers or body trickle in: a thousand of those hold a
thousand file descriptors for as long as their clients like. Here every connection must
deliver a complete request within ``request_timeout_s`` of opening (and of its previous
response), or it is closed; and past ``max_connections`` open connections a new one is
closed at once, so the daemon keeps descriptors, memory and attention for the rest.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("rtrec.serve")

__all__ = ["RepeatFilter", "guarded_protocol", "raise_file_limit"]


def guarded_protocol(request_timeout_s: float, max_connections: int, counters: dict[str, int]) -> type[H11Protocol]:
    """An ``H11Protocol`` class with the deadline and the cap; ``counters`` counts what it closed."""

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                counters["refused"] = counters.get("refused", 0) + 1
                transport.abort()
                return
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(request_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing() and self.conn.their_state is not h11.DONE:
                counters["timed_out"] = counters.get("timed_out", 0) + 1
                self.transport.abort()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.DONE:
                self._disarm()  # the request is in: how long the answer takes is not the client's doing

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection gets its own deadline

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11Protocol


def raise_file_limit(want: int = 65_536) -> tuple[int, int]:
    """Raise the soft limit on open files towards the hard one (at most ``want``); return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    return soft, hard


class RepeatFilter(logging.Filter):
    """Let one record of a given message through per ``every_s`` seconds (asyncio's accept() errors
    repeat once a second for as long as the condition lasts)."""

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)[:200]
        now = time.monotonic()
        if now - self._last.get(key, -1e18) < self.every_s:
            return False
        self._last[key] = now
        if len(self._last) > 1000:
            self._last.clear()
        return True
