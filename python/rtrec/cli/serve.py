"""``rtrec serve``: run the daemon (event log owner, online learner and HTTP API)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import typer

from rtrec.cli._common import CONFIG_OPTION, HOME_OPTION, handle_errors, load


@handle_errors
def serve(
    home: Path | None = HOME_OPTION,
    config: Path | None = CONFIG_OPTION,
    host: str | None = typer.Option(None, "--host", help="Address to bind [config: serve.host; default 127.0.0.1]."),
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="Port to bind; 0 picks a free one [config: serve.port; default 8080]."
    ),
    demo: bool = typer.Option(
        False,
        "--demo",
        help="Play simulated users against the daemon, to watch it learn (impressions resolve after 60 s, not 30 min).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log warnings only."),
    insecure: bool = typer.Option(
        False, "--insecure", help="Allow a non-loopback address without a token (anyone who can reach it can write)."
    ),
) -> None:
    """Serve recommendations over HTTP and learn from events as they arrive, until SIGTERM or Ctrl-C.

    Starts cold on an empty home, or resumes from the newest checkpoint. The URL and pid
    are written to <home>/serve.json while it runs.
    """
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    flags: dict[str, Any] = {"serve": overrides} if overrides else {}
    if demo:
        # Simulated users click within seconds: a short window turns unclicked impressions
        # into negatives while the demo is being watched.
        flags["labels"] = {"impression_window_s": 60.0}
    cfg = load(config, home, flags or None)
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from rtrec.serve.start import serve as run

    code = run(cfg, demo=demo, insecure=insecure)
    # Everything is committed, checkpointed and closed by now; skip the interpreter's slow
    # teardown of torch so that a restart (or a supervisor's stop) does not wait on it.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
