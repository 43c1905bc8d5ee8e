"""`conveyor history`: finished jobs, and cleaning them out before retention would (through
conveyor.ops as the local admin)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from ..ops import jobs as ops
from ..ops.roles import LOCAL_ADMIN
from ..queue.cleaning import CLEANABLE_STATES
from ..queue.filters import ENDED_STATES
from .common import Context, Duration, handle_errors, json_option, run_coroutine, with_client
from .jobs import echo_page, filter_options


@click.group()
def history() -> None:
    """Finished jobs (completed, cancelled, dead): list them, clean them out."""


@history.command("list")
@click.option(
    "--state", "states", type=click.Choice(ENDED_STATES), multiple=True, help="Repeat for several states."
)
@filter_options
@json_option
@click.pass_obj
@handle_errors
def history_list(ctx: Context, states: tuple[str, ...], as_json: bool, **options: Any) -> None:
    """Finished jobs, most recently finished first; a full page ends with the --cursor of the
    next one."""
    page = run_coroutine(
        with_client(ctx, lambda c: ops.history(c, LOCAL_ADMIN, state=states or None, **options))
    )
    echo_page(page, "jobs", as_json)


@history.command("clean")
@click.option(
    "--older-than",
    type=Duration("h"),
    required=True,
    help="Jobs finished longer ago than this (7d, 12h, 30m; a bare number is in hours).",
)
@click.option("--queue", "-q", help="Only this queue's jobs.")
@click.option(
    "--state",
    type=click.Choice(CLEANABLE_STATES),
    help="Only completed or cancelled jobs (default: both), or dead ones.",
)
@click.option(
    "--budget",
    type=Duration("s", minimum=0.001),
    default=f"{ops.MAX_CLEAN_BUDGET:g}s",
    show_default=True,
    help=f"Stop starting batches after this long (at most {ops.MAX_CLEAN_BUDGET:g}s); run again for the rest.",
)
@click.pass_obj
@handle_errors
def history_clean(
    ctx: Context, older_than: timedelta, queue: str | None, state: str | None, budget: timedelta
) -> None:
    """Move finished jobs older than --older-than to the run log now, as retention would, in
    batches of 5,000 that never hold a lock long."""
    moved = run_coroutine(
        with_client(
            ctx,
            lambda c: ops.clean_history(
                c, LOCAL_ADMIN, older_than, queue=queue, state=state, budget=budget.total_seconds()
            ),
        )
    )
    click.echo(f"cleaned {moved} finished job(s) older than {older_than}")
