"""``rtrec encode``: embed the catalog's item texts now, reusing cached vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from rtrec.cli._common import CONFIG_OPTION, HOME_OPTION, handle_errors, load, stderr_console


def _open_log(cfg: Any) -> Any:
    from rtrec.events import EventLog

    return EventLog.open(cfg.db_path, cfg.events)


@handle_errors
def encode(
    home: Path | None = HOME_OPTION,
    config: Path | None = CONFIG_OPTION,
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or auto [config: text.device]."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Texts per batch [config: text.batch_size]."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Encode new or changed catalog items with the configured text model and cache the vectors."""
    overrides: dict[str, Any] = {}
    if device is not None:
        overrides["device"] = device
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    cfg = load(config, home, {"text": overrides} if overrides else None)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rtrec.text import EmbeddingCache, load_encoder

    console = stderr_console()
    with console.status(f"Loading text model {cfg.text.model}...", spinner="dots"):
        encoder = load_encoder(cfg.text)
    log = _open_log(cfg)
    try:
        items = log.items()
        cache = EmbeddingCache(log.cursor, encoder, cfg.text.template)
        columns = (TextColumn("Encoding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("encode", total=None)
            stats = cache.refresh(items, progress=lambda done, total: bar.update(task, completed=done, total=total))
    finally:
        close = getattr(log, "close", None)
        if close is not None:
            close()
    stats = {**stats, "dtype": encoder.dtype}
    if as_json:
        typer.echo(json.dumps(stats))
        return
    typer.echo(
        f"Encoded {stats['encoded']} items, {stats['cached']} cached, {stats['items_per_s']:.1f} items/s "
        f"(model {stats['model']}, device {stats['device']}, {stats['dtype']})"
    )


def register(app: typer.Typer) -> None:
    app.command("encode")(encode)
