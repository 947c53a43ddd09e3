"""``rtrec replay``: backfill a historical log through the learner and evaluate it against baselines."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rtrec.cli._common import CONFIG_OPTION, handle_errors, load, stderr_console


@handle_errors
def replay(
    log: Path = typer.Argument(..., help="Events in the canonical schema: .parquet, .csv or .jsonl."),
    items: Path | None = typer.Option(None, "--items", help="Item catalog file (title, category, tags, ...)."),
    report: Path = typer.Option(Path("report"), "--report", help="Directory for report.json, report.png, checkpoint."),
    home: Path | None = typer.Option(
        None,
        "--home",
        help="Use this home's event log (replaying every event in it) and keep the events and the final checkpoint "
        "there (default: a temporary database).",
    ),
    config: Path | None = CONFIG_OPTION,
    no_text: bool = typer.Option(False, "--no-text", help="Turn the language-model item features off."),
    no_ablations: bool = typer.Option(False, "--no-ablations", help="Skip the per-piece text ablations."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Stream LOG in timestamp order through the daemon's learner; report progressive metrics."""
    overrides = {"text": {"enabled": False}} if no_text else None
    cfg = load(config, home, overrides)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from rtrec.replay import run_replay

    console = stderr_console()
    with Progress(
        TextColumn("[bold]replay"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} events"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("replay", total=0, rate="")
        import time

        start = time.perf_counter()

        def progress(done: int, total: int) -> None:
            rate = done / max(time.perf_counter() - start, 1e-9)
            bar.update(task, completed=done, total=total, rate=f"{rate:,.0f} events/s")

        result = run_replay(
            log,
            cfg,
            items_path=items,
            report_dir=report,
            home=cfg.home if home is not None else None,
            ablations=not no_ablations,
            progress=progress,
            status=lambda msg: console.print(msg),
        )
    data = result.data
    if as_json:
        keys = ("events", "examples", "evaluated", "requests", "events_per_s", "models", "sources", "ope")
        typer.echo(json.dumps({k: data[k] for k in keys if k in data}))
        return
    from rich.table import Table

    table = Table(title=f"rtrec replay: {data['events']:,} events, {data['events_per_s']:,.0f} events/s")
    # The served list first: top-K of each model row (``rtrec`` is the retrieve-and-rank pipeline,
    # other rows rank the whole catalog by their own score); then click-through quality.
    rank_cols = ("hr_at_10", "ndcg_at_10", "recall_at_50", "coverage_at_10", "cold_hr_at_10")
    cols: tuple[str, ...] = (*rank_cols, "auc", "logloss", "calibration", "cold_auc", "cold_user_auc")
    if data.get("requests"):
        # Impression logs: the per-request AUC (as in the MIND benchmark) next to the global one.
        cols = (*rank_cols, "auc", "group_auc", *cols[len(rank_cols) + 1 :])
    table.add_column("model", no_wrap=True)
    for c in cols:
        table.add_column(c, justify="right", overflow="fold")
    for name, row in data["models"].items():
        table.add_row(name, *("-" if row.get(c) is None else f"{row[c]:.4f}" for c in cols))
    for name, row in data.get("sources", {}).items():
        table.add_row(f"source: {name}", *("-" if row.get(c) is None else f"{row[c]:.4f}" for c in cols))
    import sys

    from rich.console import Console

    # Into a pipe or a file the table is printed whole; a terminal folds headers to fit.
    out = Console(width=None if sys.stdout.isatty() else 200)
    out.print(table)
    if data.get("ope"):
        from rtrec.cli.evaluate import notes, ope_table

        # Off-policy estimates of the served model: the log has propensities.
        out.print(ope_table(data["ope"], "off-policy, served pipeline rows"))
        typer.echo(notes(data["ope"]))
    typer.echo(f"report: {result.report_dir / 'report.json'}  plot: {result.report_dir / 'report.png'}")
    typer.echo(f"checkpoint: {result.checkpoint}")


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
