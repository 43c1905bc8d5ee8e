"""`conveyor queues`: list, create, pause and resume queues, and set their limits (through
conveyor.ops as the local admin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..errors import ConveyorError
from ..limits import MAX_CONCURRENCY, LimitsInUse, QueueLimits, Rate, parse_rate
from ..ops import queues as ops
from ..ops.roles import LOCAL_ADMIN
from ..queue.overview import QueueOverview
from .common import Context, echo_json, handle_errors, json_option, run_coroutine, table, with_client

if TYPE_CHECKING:  # click's ParamType is generic from 8.2 on, and cannot be subscripted before
    _RateBase = click.ParamType[Rate, Any]
else:
    _RateBase = click.ParamType


class RateType(_RateBase):
    """A rate limit option: COUNT/DURATION, like ``20/1m`` or ``10/1s``."""

    name = "rate"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Rate:
        if isinstance(value, Rate):
            return value
        try:
            return parse_rate(str(value))
        except ConveyorError as exc:
            self.fail(str(exc), param, ctx)


@click.group()
def queues() -> None:
    """List, create, pause and resume queues."""


@queues.command("list")
@json_option
@click.pass_obj
@handle_errors
def queues_list(ctx: Context, as_json: bool) -> None:
    """Every queue: paused or not, its limits and their use now (running jobs, starts within
    the rate window), so a queue that is not draining says why."""
    stats = run_coroutine(with_client(ctx, lambda c: ops.list_queues(c, LOCAL_ADMIN)))
    if as_json:
        echo_json(
            [
                {
                    "queue": s.queue,
                    "paused": s.paused,
                    "all_paused": s.all_paused,
                    "paused_tasks": s.paused_tasks,
                    "limits": limits_json(s.limits),
                }
                for s in stats
            ]
        )
        return
    rows = [[s.queue, paused_cell(s), *limits_cells(s.limits)] for s in stats]
    click.echo(table(rows, ["queue", "paused", "limits", "in use"]))
    if stats and stats[0].all_paused:
        click.echo("\neverything is paused: `conveyor resume --all` lets jobs start again")


def limits_cells(use: LimitsInUse | None) -> list[str]:
    if use is None:
        return ["-", "-"]
    return [use.limits.describe(), use.describe_use()]


def limits_json(use: LimitsInUse | None) -> dict[str, Any] | None:
    if use is None:
        return None
    limits = use.limits
    return {
        "rate": None if limits.rate is None else {"limit": limits.rate.count, "period": limits.rate.period},
        "concurrency": limits.concurrency,
        "key_rate": None
        if limits.key_rate is None
        else {"limit": limits.key_rate.count, "period": limits.key_rate.period},
        "key_concurrency": limits.key_concurrency,
        "running": use.running,
        "window_starts": use.window_starts,
        "keys_in_window": use.keys_in_window,
    }


@queues.command("limit")
@click.argument("name")
@click.option("--rate", type=RateType(), help="At most COUNT job starts per DURATION, e.g. 20/1m.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=MAX_CONCURRENCY),
    help="At most this many running at once.",
)
@click.option("--key-rate", type=RateType(), help="Per job key: at most COUNT starts per DURATION.")
@click.option(
    "--key-concurrency",
    type=click.IntRange(min=1, max=MAX_CONCURRENCY),
    help="Per job key: at most this many running.",
)
@click.option("--clear", is_flag=True, help="Remove every limit of the queue.")
@click.pass_obj
@handle_errors
def queues_limit(
    ctx: Context,
    name: str,
    rate: Rate | None,
    concurrency: int | None,
    key_rate: Rate | None,
    key_concurrency: int | None,
    clear: bool,
) -> None:
    """Set a queue's limits, enforced across all workers (the options not given are cleared),
    or --clear them all. A worker whose code declares limits for the queue sets them again
    when it starts (docs/limits.md)."""
    given = [v for v in (rate, concurrency, key_rate, key_concurrency) if v is not None]
    if clear == bool(given):
        raise click.UsageError(
            "give at least one of --rate, --concurrency, --key-rate, --key-concurrency, or --clear alone"
        )
    limits = QueueLimits(
        rate=rate, concurrency=concurrency, key_rate=key_rate, key_concurrency=key_concurrency
    )
    run_coroutine(with_client(ctx, lambda c: ops.set_queue_limits(c, LOCAL_ADMIN, name, limits)))
    click.echo(f"queue {name!r}: no limits" if clear else f"queue {name!r}: {limits.describe()}")


def paused_cell(stats: QueueOverview) -> str:
    """What is paused in a queue: the queue itself ("yes"), everything ("all"), and the paused
    tasks with jobs waiting in it ("tasks: a, b"); "no" when nothing is."""
    parts = ["yes"] if stats.paused else []
    if stats.all_paused:
        parts.append("all")
    if stats.paused_tasks:
        parts.append("tasks: " + ", ".join(stats.paused_tasks))
    return "; ".join(parts) if parts else "no"


@queues.command("create")
@click.argument("name")
@click.pass_obj
@handle_errors
def queues_create(ctx: Context, name: str) -> None:
    run_coroutine(with_client(ctx, lambda c: ops.create_queue(c, LOCAL_ADMIN, name)))
    click.echo(f"queue {name!r} exists")


@queues.command("pause")
@click.argument("name")
@click.pass_obj
@handle_errors
def queues_pause(ctx: Context, name: str) -> None:
    """Stop workers claiming from a queue (running jobs finish)."""
    run_coroutine(with_client(ctx, lambda c: ops.pause_queue(c, LOCAL_ADMIN, name)))
    click.echo(f"queue {name!r} paused")


@queues.command("resume")
@click.argument("name")
@click.pass_obj
@handle_errors
def queues_resume(ctx: Context, name: str) -> None:
    """Let workers claim from a queue again."""
    run_coroutine(with_client(ctx, lambda c: ops.resume_queue(c, LOCAL_ADMIN, name)))
    click.echo(f"queue {name!r} resumed")
