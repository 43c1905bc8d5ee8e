"""`conveyor status`: the state of every queue, and of the scheduler (through conveyor.ops as
the local admin)."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from ..ops import queues as queue_ops
from ..ops import status as status_ops
from ..ops.roles import LOCAL_ADMIN
from ..queue.client import Conveyor, QueueStats
from ..queue.overview import QueueOverview
from ..queue.roster import SchedulerStatus, seconds_ago
from .common import Context, echo_json, handle_errors, json_option, run_coroutine, table, warn, with_client
from .queues import limits_cells, limits_json, paused_cell

HEADERS = [
    "queue",
    "paused",
    "waiting",
    "scheduled",
    "running",
    "completed_24h",
    "dead",
    "oldest_waiting",
    "limits",
    "limits_in_use",
]


@click.command()
@json_option
@click.pass_obj
@handle_errors
def status(ctx: Context, as_json: bool) -> None:
    """Per queue: waiting, scheduled, running, completed (24 h), dead, oldest waiting, its limits
    and their use now; then
    the elected scheduler, with a warning when schedules exist and none runs."""

    async def read(client: Conveyor) -> tuple[list[QueueOverview], SchedulerStatus]:
        queues = await queue_ops.list_queues(client, LOCAL_ADMIN)
        return queues, await status_ops.scheduler_status(client, LOCAL_ADMIN)

    stats, scheduler = run_coroutine(with_client(ctx, read))
    warning = scheduler.warning()
    if as_json:
        echo_json(
            {
                "queues": [{**counts(s), "limits": limits_json(s.limits)} for s in stats],
                "scheduler": {
                    **dataclasses.asdict(scheduler),
                    "running": scheduler.running,
                    "last_tick_age": scheduler.last_tick_age,  # seconds
                },
                "warnings": [warning] if warning else [],
            }
        )
    else:
        rows: list[list[Any]] = [
            [
                s.queue,
                paused_cell(s),
                s.waiting,
                s.scheduled,
                s.running,
                s.completed_24h,
                s.dead,
                s.oldest_waiting_age,
                *limits_cells(s.limits),
            ]
            for s in stats
        ]
        click.echo(table(rows, HEADERS))
        click.echo("")
        click.echo(f"scheduler: {describe_scheduler(scheduler)}")
    if stats and stats[0].all_paused:
        warn("everything is paused: no job starts until `conveyor resume --all`")
    if warning:
        warn(warning)


# What `status --json` shows of each queue: the queue_stats view's columns, as it always has.
_COUNTS = tuple(field.name for field in dataclasses.fields(QueueStats))


def counts(queue: QueueOverview) -> dict[str, Any]:
    return {name: getattr(queue, name) for name in _COUNTS}


def describe_scheduler(scheduler: SchedulerStatus) -> str:
    schedules = f"{scheduler.active_schedules} schedule(s) active"
    if not scheduler.running or scheduler.elected_at is None or scheduler.expires_at is None:
        return f"none running; {schedules}"
    tick = "" if scheduler.renewed_at is None else f"last tick {seconds_ago(scheduler.last_tick_age)} ago, "
    return (
        f"leader {scheduler.hostname} pid {scheduler.pid} since {scheduler.elected_at:%Y-%m-%d %H:%M:%S%z}, "
        f"{tick}lease renewed every tick, until {scheduler.expires_at:%Y-%m-%d %H:%M:%S%z}; {schedules}"
    )
