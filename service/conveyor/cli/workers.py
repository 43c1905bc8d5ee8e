"""`conveyor workers`: the workers, their heartbeats and the jobs they hold; the scheduler
(through conveyor.ops as the local admin)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import click

from ..ops import status as ops
from ..ops.roles import LOCAL_ADMIN
from ..queue.roster import Workers
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
from .status import describe_scheduler


@click.command()
@click.option(
    "--lease",
    type=Duration("s", minimum=1),
    default="30s",
    show_default=True,
    help="The workers' lease: a worker silent for longer (and holding no live lease) is not alive.",
)
@json_option
@click.pass_obj
@handle_errors
def workers(ctx: Context, lease: timedelta, as_json: bool) -> None:
    """Live workers and those silent for less than an hour: host, pid, queues, concurrency,
    heartbeat age, alive, and the jobs each holds; then the scheduler."""
    found: Workers = run_coroutine(with_client(ctx, lambda c: ops.workers(c, LOCAL_ADMIN, lease=lease)))
    if as_json:
        scheduler = found.scheduler
        echo_json(
            {
                "workers": [dataclasses.asdict(w) for w in found.workers],
                "scheduler": {
                    **dataclasses.asdict(scheduler),
                    "running": scheduler.running,
                    "last_tick_age": scheduler.last_tick_age,
                },
            }
        )
        return
    rows = [
        [
            w.id,
            f"{w.hostname}:{w.pid}",
            ",".join(w.queues),
            f"{len(w.jobs)}/{w.concurrency}",
            f"{w.heartbeat_age.total_seconds():.1f}",
            w.alive,
            " ".join(f"{j.id}:{j.task}" for j in w.jobs),
        ]
        for w in found.workers
    ]
    click.echo(table(rows, ["worker", "host:pid", "queues", "running", "heartbeat_s", "alive", "jobs"]))
    click.echo(f"\nscheduler: {describe_scheduler(found.scheduler)}")
