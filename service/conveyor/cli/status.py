"""`conveyor status`: the state of every queue."""

from __future__ import annotations

import click

from .common import Context, handle_errors, run_coroutine, table, with_client


@click.command()
@click.pass_obj
@handle_errors
def status(ctx: Context) -> None:
    """Per queue: waiting, scheduled, running, completed (24 h), dead, oldest waiting."""
    stats = run_coroutine(with_client(ctx, lambda c: c.queue_stats()))
    headers = [
        "queue",
        "paused",
        "waiting",
        "scheduled",
        "running",
        "completed_24h",
        "dead",
        "oldest_waiting",
    ]
    rows = [
        [s.queue, s.paused, s.waiting, s.scheduled, s.running, s.completed_24h, s.dead, s.oldest_waiting_age]
        for s in stats
    ]
    click.echo(table(rows, headers))
