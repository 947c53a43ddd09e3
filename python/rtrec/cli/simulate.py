"""``rtrec simulate``: write a synthetic world (events.parquet, items.parquet) with known ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rtrec.cli._common import handle_errors

OUT_OPTION = typer.Option(..., "--out", help="Folder to write events.parquet and items.parquet into.")
SHIFT_OPTION = typer.Option([0.5], "--shift-at", help="Preference shift time, a fraction of the timeline (repeatable).")


@handle_errors
def simulate(
    out: Path = OUT_OPTION,
    users: int = typer.Option(200, "--users", min=1, help="Number of users."),
    items: int = typer.Option(300, "--items", min=1, help="Number of items."),
    topics: int = typer.Option(6, "--topics", min=1, help="Number of topics."),
    events: int = typer.Option(20_000, "--events", min=1, help="Number of events."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same data)."),
    shift_at: list[float] = SHIFT_OPTION,
    styles: int = typer.Option(
        0, "--styles", min=0, max=8, help="Item styles that show only in the item text (0: none)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Generate events from a simulator with topic preferences, a known click model and preference shifts."""
    from rtrec.sim import SimConfig, Simulator

    cfg = SimConfig(
        n_users=users,
        n_items=items,
        n_topics=topics,
        n_events=events,
        seed=seed,
        shift_at=tuple(shift_at),
        n_styles=styles,
    )
    sim = Simulator(cfg)
    events_path, items_path = sim.write(out)
    shifts = [t.isoformat() for t in sim.shift_times]
    if as_json:
        typer.echo(json.dumps({"events": str(events_path), "items": str(items_path), "shift_times": shifts}))
        return
    typer.echo(
        f"Wrote {events} events to {events_path} and {items} items to {items_path}; shifts at {', '.join(shifts)}"
    )


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
