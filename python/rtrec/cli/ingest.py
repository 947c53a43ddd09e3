"""``rtrec ingest``: load events (or, with ``--items``, the catalog) from a file into the home's database."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rtrec.cli._common import CONFIG_OPTION, HOME_OPTION, handle_errors, load

FILE_ARGUMENT = typer.Argument(..., help="A .parquet, .csv, .jsonl/.ndjson or .json file.")


@handle_errors
def ingest(
    file: Path = FILE_ARGUMENT,
    items: bool = typer.Option(False, "--items", help="The file is the item catalog (upserted by item_id)."),
    order_by_ts: bool = typer.Option(False, "--order-by-ts", help="Number the events in event-time order."),
    home: Path | None = HOME_OPTION,
    config: Path | None = CONFIG_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Validate and append events to the event log; rejected rows go to the rejected_events table."""
    cfg = load(config, home)
    from rtrec.errors import InvalidInputError
    from rtrec.events import EventLog

    if not file.exists():
        raise InvalidInputError(f"file {file} does not exist")
    with EventLog.open(cfg.db_path, cfg.events) as log:
        summary = log.ingest_file(file, items=items, order_by_ts=order_by_ts)
        total = log.count_events()
    if as_json:
        out = summary.to_dict()
        out["kind"] = "items" if items else "events"
        out["total_events"] = total
        typer.echo(json.dumps(out))
        return
    if items:
        typer.echo(f"Ingested {file.name}: {summary.accepted} items upserted into {cfg.db_path}")
        return
    line = (
        f"Ingested {file.name}: {summary.accepted} accepted, {summary.duplicates} duplicates, "
        f"{len(summary.rejected)} rejected"
    )
    if summary.first_seq is not None:
        line += f" (seq {summary.first_seq}..{summary.last_seq})"
    typer.echo(line + f"; {total} events in {cfg.db_path}")
    for rej in summary.rejected[:5]:
        typer.echo(f"  rejected row {rej.index}: {rej.reason}", err=True)
    if len(summary.rejected) > 5:
        typer.echo(f"  ... and {len(summary.rejected) - 5} more (see the rejected_events table)", err=True)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
