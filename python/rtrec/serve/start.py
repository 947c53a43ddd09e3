"""Starting ``rtrec serve``: refuse an exposed address without a token, bind, build the daemon, run it."""

from __future__ import annotations

import logging
import os
import socket
import sys

from rtrec.config import Config
from rtrec.errors import ConfigError, StorageError
from rtrec.serve.daemon import Daemon
from rtrec.serve.gcwatch import freeze_startup

log = logging.getLogger("rtrec.serve")

SWITCH_INTERVAL_S = 0.001  # the interpreter's switch interval in the daemon (see serve())

__all__ = ["SWITCH_INTERVAL_S", "bind", "check_exposure", "serve"]


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
    # The learner and a request take turns with the GIL, handing it over at most every switch
    # interval (the default 5 ms would be a p99 floor). Shorter intervals gave the learner more
    # under overload but cost recommend p99 at 1,000 events/s (bench/RESULTS.md).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
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
    # What start-up loaded (libraries, the restored model) stays for the process's life: keep
    # it out of every later collection, and time the collections that remain.
    daemon.gc_watch.install()
    daemon.gc_watch.frozen = freeze_startup()
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
