"""``rtrec simulate``: write a synthetic world (events.parquet, items.parquet) with known ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rtrec.cli._common import handle_errors

OUT_OPTION = typer.Option(..., "--out", help="Folder to write events.parquet and items.parquet into.")
SHIFT_OPTION = typer.Option([0.5], "--shift-at", help="Preference shift time, a fraction of the timeline (repeatable).")


def _share(value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise typer.BadParameter(f"must be in [0, 1), got {value}")
    return value


BOTS_OPTION = typer.Option(
    0.0, "--bots", callback=_share, help="Share of all events that come from bot users, in [0, 1)."
)
NOISE_OPTION = typer.Option(
    0.0, "--noise", callback=_share, help="Extra noise events (repeats, absurd values), a share of the real ones."
)


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
    bots: float = BOTS_OPTION,
    noise: float = NOISE_OPTION,
    events_per_bot: int = typer.Option(
        50, "--events-per-bot", min=1, help="How long a bot lives, in events (bots are at most a fifth of users)."
    ),
    crawlers: float = typer.Option(
        0.0,
        "--crawlers",
        min=0.0,
        max=1.0,
        help="Share of the bot events from crawlers: scrapers walking the catalog in order, clicking every page.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Generate events from a simulator with topic preferences, a known click model and preference shifts.

    With --bots and --noise the events also hold bot users and noise; each such event says so in
    its context ("truth": "bot" or "noise"), so that a cleaning stage can be scored.
    """
    from rtrec.sim import SimConfig, Simulator

    cfg = SimConfig(
        n_users=users,
        n_items=items,
        n_topics=topics,
        n_events=events,
        seed=seed,
        shift_at=tuple(shift_at),
        n_styles=styles,
        bot_share=bots,
        noise_share=noise,
        events_per_bot=events_per_bot,
        bot_crawlers=crawlers,
    )
    sim = Simulator(cfg)
    events_path, items_path = sim.write(out)
    counts = sim.event_counts()
    shifts = [t.isoformat() for t in sim.shift_times]
    if as_json:
        summary = {
            "events": str(events_path),
            "items": str(items_path),
            "shift_times": shifts,
            "event_count": counts.total,
            "bot_events": counts.bot,
            "noise_events": counts.noise,
        }
        typer.echo(json.dumps(summary))
        return
    extra = f" ({counts.bot} from bots, {counts.noise} noise)" if counts.bot or counts.noise else ""
    typer.echo(
        f"Wrote {counts.total} events{extra} to {events_path} and {items} items to {items_path}; "
        f"shifts at {', '.join(shifts)}"
    )


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
