"""``rtrec evaluate``: off-policy estimates of exploration policies from a log with propensities."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer

from rtrec.cli._common import CONFIG_OPTION, handle_errors, load, stderr_console

POLICY_OPTION = typer.Option(
    [],
    "--policy",
    help="Target policy: none, epsilon=0.1, softmax:temperature=0.05, thompson:scale=1 (repeatable); "
    "default: the configured exploration, and none.",
)


@handle_errors
def evaluate(
    log: Path | None = typer.Argument(
        None, help="Events (.parquet, .csv or .jsonl); without it, the home's event log (read only)."
    ),
    items: Path | None = typer.Option(None, "--items", help="Item catalog file, with LOG."),
    home: Path | None = typer.Option(
        None, "--home", help="rtrec home whose log to evaluate when no LOG is given (or RTREC_HOME)."
    ),
    policy: list[str] = POLICY_OPTION,
    clip: float | None = typer.Option(None, "--clip", help="Cap every importance weight at this (positive)."),
    sample: float = typer.Option(1.0, "--sample", help="Share of logged requests to evaluate, in (0, 1]."),
    config: Path | None = CONFIG_OPTION,
    no_text: bool = typer.Option(False, "--no-text", help="Turn the language-model item features off."),
    as_json: bool = typer.Option(False, "--json", help="Print the estimates as one JSON object."),
) -> None:
    """Estimate what each policy would have earned on the logged requests (IPS, SNIPS, doubly robust).

    The log streams through a fresh learner; each request is ranked as it would have been served
    then, before the model learns its outcome. The value is the click rate per shown item.
    """
    cfg = load(config, home, {"text": {"enabled": False}} if no_text else None)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from rtrec.ope.offline import evaluate as run
    from rtrec.ope.policies import parse_policy

    specs = [parse_policy(p) for p in policy] or None
    console = stderr_console()
    start = time.perf_counter()
    with Progress(
        TextColumn("[bold]evaluate"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} events"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # into a pipe: no bar, and an error stays one line
    ) as bar:
        task = bar.add_task("evaluate", total=0)
        report = run(
            cfg,
            log_path=log,
            items_path=items,
            home=cfg.home,
            policies=specs,
            clip=clip,
            sample=sample,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            say=lambda msg: console.print(msg),
        )
    data = report.as_dict()
    data["seconds"]["total"] = time.perf_counter() - start
    if as_json:
        from rtrec.jsonable import jsonable

        typer.echo(json.dumps(jsonable(data, digits=6)))
        return
    from rich.console import Console

    Console(width=None if sys.stdout.isatty() else 200).print(ope_table(data, "rtrec evaluate"))
    typer.echo(notes(data))


def ope_table(data: dict[str, Any], title: str) -> Any:
    """A Rich table of an OPE report (``OffPolicyReport.as_dict``): one row per policy, model and estimator."""
    from rich.table import Table

    rate = data["observed_click_rate"]
    table = Table(
        title=f"{title}: {data['requests']:,} requests, {data['shown']:,} shown items, "
        f"observed click rate {'-' if rate is None else f'{rate:.4f}'}"
    )
    for c in ("policy", "estimator", "value", "95% interval", "ESS", "requests"):
        table.add_column(c, justify="left" if c in ("policy", "estimator") else "right", no_wrap=True)

    def add(label: str, estimates: dict[str, dict[str, Any]]) -> None:
        for name, e in estimates.items():
            value, interval = "-", "-"
            if e["value"] is not None:
                value, interval = f"{e['value']:.4f}", f"[{e['low']:.4f}, {e['high']:.4f}]"
            table.add_row(label, name, value, interval, f"{e['ess']:,.0f}", f"{e['n_requests']:,}")
            label = ""

    add("logging", data["logging"])
    for label, per in data["policies"].items():
        for model, estimates in per.items():
            add(label if len(per) == 1 else f"{label} ({model})", estimates)
    return table


def notes(data: dict[str, Any]) -> str:
    """One line on what the estimates rest on: sampling, skipped requests, strangers."""
    skipped = data["skipped"]
    parts = [f"{data['requests']:,} of {data['logged_requests']:,} logged requests evaluated"]
    if skipped["not_sampled"]:
        parts.append(f"{skipped['not_sampled']:,} not sampled ({data['sample']:g})")
    if skipped["incomplete"]:
        parts.append(f"{skipped['incomplete']:,} skipped (impressions set aside by cleaning)")
    parts.append(f"{data['strangers']:,} of users new then (ranked by the CTR model over every known item)")
    parts.append(f"the model at most {data['chunk_events']:,} events behind each request")
    return "; ".join(parts)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
