"""`conveyor retention`: show, change and apply how long finished work is kept (through
conveyor.ops as the local admin)."""

from __future__ import annotations

from datetime import timedelta

import click

from ..ops import retention as ops
from ..ops.roles import LOCAL_ADMIN
from ..queue.client import Conveyor
from .common import (
    Context,
    Duration,
    echo_json,
    handle_errors,
    json_option,
    run_coroutine,
    table,
    with_client,
)


@click.group()
def retention() -> None:
    """Show, change and apply how long finished work is kept."""


@retention.command("show")
@json_option
@click.pass_obj
@handle_errors
def retention_show(ctx: Context, as_json: bool) -> None:
    rows = run_coroutine(with_client(ctx, lambda c: ops.show(c, LOCAL_ADMIN)))
    if as_json:
        echo_json(rows)
        return
    headers = ["queue", "completed_keep", "completed_max", "dead_keep", "runs_keep"]
    click.echo(table([[r[h] for h in headers] for r in rows], headers))


@retention.command("set")
@click.option("--queue", "-q", default="*", show_default=True, help="A queue, or * for the defaults.")
@click.option("--completed", type=Duration(None), help="Keep finished jobs this long (e.g. 24h, 3d).")
@click.option(
    "--completed-max", type=click.IntRange(min=0), help="Keep at most this many finished jobs per queue."
)
@click.option("--dead", type=Duration(None), help="Keep dead jobs this long (e.g. 7d).")
@click.option("--runs", type=Duration(None), help="Keep the run log this long (e.g. 90d).")
@click.pass_obj
@handle_errors
def retention_set(
    ctx: Context,
    queue: str,
    completed: timedelta | None,
    completed_max: int | None,
    dead: timedelta | None,
    runs: timedelta | None,
) -> None:
    """Change the defaults (or one queue's retention); unset options are left as they are."""

    async def go(client: Conveyor) -> None:
        await ops.set_retention(
            client,
            LOCAL_ADMIN,
            queue,
            completed_keep=completed,
            completed_max=completed_max,
            dead_keep=dead,
            runs_keep=runs,
        )

    run_coroutine(with_client(ctx, go))
    click.echo(f"retention for {'the defaults' if queue == '*' else repr(queue)} updated")


@retention.command("apply")
@click.pass_obj
@handle_errors
def retention_apply(ctx: Context) -> None:
    """Apply retention now, for 30 seconds at most: what is left goes on the next run (the
    elected scheduler applies it every 10 minutes)."""
    done = run_coroutine(with_client(ctx, lambda c: ops.apply(c, LOCAL_ADMIN, budget=ops.MAX_APPLY_BUDGET)))
    click.echo(table([[step, n] for step, n in done.items()], ["step", "affected"]))
