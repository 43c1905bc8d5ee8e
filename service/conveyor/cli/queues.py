"""`conveyor queues`: list, create, pause and resume queues."""

from __future__ import annotations

import click

from ..queue.client import QueueStats
from .common import Context, echo_json, handle_errors, json_option, run_coroutine, table, with_client


@click.group()
def queues() -> None:
    """List, create, pause and resume queues."""


@queues.command("list")
@json_option
@click.pass_obj
@handle_errors
def queues_list(ctx: Context, as_json: bool) -> None:
    stats = run_coroutine(with_client(ctx, lambda c: c.queue_stats()))
    if as_json:
        echo_json(
            [
                {
                    "queue": s.queue,
                    "paused": s.paused,
                    "all_paused": s.all_paused,
                    "paused_tasks": s.paused_tasks,
                }
                for s in stats
            ]
        )
        return
    click.echo(table([[s.queue, paused_cell(s)] for s in stats], ["queue", "paused"]))
    if stats and stats[0].all_paused:
        click.echo("\neverything is paused: `conveyor resume --all` lets jobs start again")


def paused_cell(stats: QueueStats) -> str:
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
    run_coroutine(with_client(ctx, lambda c: c.create_queue(name)))
    click.echo(f"queue {name!r} exists")


@queues.command("pause")
@click.argument("name")
@click.pass_obj
@handle_errors
def queues_pause(ctx: Context, name: str) -> None:
    """Stop workers claiming from a queue (running jobs finish)."""
    run_coroutine(with_client(ctx, lambda c: c.pause_queue(name)))
    click.echo(f"queue {name!r} paused")


@queues.command("resume")
@click.argument("name")
@click.pass_obj
@handle_errors
def queues_resume(ctx: Context, name: str) -> None:
    """Let workers claim from a queue again."""
    run_coroutine(with_client(ctx, lambda c: c.resume_queue(name)))
    click.echo(f"queue {name!r} resumed")
