"""``rtrec inspect``: a live dashboard of a running daemon, or a snapshot of a stopped one's home."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from rtrec.cli._common import CONFIG_OPTION, HOME_OPTION, handle_errors, load, stderr_console


@handle_errors
def inspect(
    url: str | None = typer.Option(None, "--url", help="Daemon URL [default: from <home>/serve.json or the config]."),
    home: Path | None = HOME_OPTION,
    config: Path | None = CONFIG_OPTION,
    token: str | None = typer.Option(
        None, "--token", help="Bearer token, full or read-only [env: RTREC_TOKEN; config: serve.token]."
    ),
    once: bool = typer.Option(False, "--once", help="Print one snapshot and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print the raw stats as JSON and exit."),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between refreshes."),
) -> None:
    """Show ingest and learn rates, lag, freshness, model quality, drift, checkpoints and latency.

    With --home and no daemon running there, reads the stopped daemon's database instead.
    """
    cfg = load(config, home)
    from rtrec.serve.client import resolve_source

    fetch = resolve_source(cfg, url=url, token=token or cfg.serve.token, explicit_home=home is not None)
    if as_json:
        typer.echo(json.dumps(fetch()))
        return
    from rtrec.dashboard import live, render

    if once:
        from rich.console import Console

        width = None if os.environ.get("COLUMNS") else 120
        Console(width=width, force_terminal=None).print(render(fetch()))
        return
    console = stderr_console()
    live(fetch, console, refresh_s=interval)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)
