"""`conveyor schedules`: list, add, pause, resume, trigger and remove cron schedules (through
conveyor.ops as the local admin)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import click

from ..errors import ConveyorError
from ..ops import schedules as ops
from ..ops.roles import LOCAL_ADMIN, Principal
from ..queue.client import Conveyor
from ..queue.matviews import REFRESH_TASK
from .common import (
    ATTEMPTS,
    Context,
    echo_json,
    handle_errors,
    json_object,
    json_option,
    load_tasks,
    run_coroutine,
    table,
    with_client,
)


@click.group()
def schedules() -> None:
    """List, add, pause, resume, trigger and remove cron schedules."""


@schedules.command("list")
@json_option
@click.pass_obj
@handle_errors
def schedules_list(ctx: Context, as_json: bool) -> None:
    rows = [v.row for v in run_coroutine(with_client(ctx, lambda c: ops.list_schedules(c, LOCAL_ADMIN)))]
    if as_json:
        echo_json(rows)
        return
    headers = [
        "name",
        "cron",
        "timezone",
        "task",
        "queue",
        "paused",
        "catch_up",
        "next_fire_at",
        "last_fire_at",
        "error",
    ]
    click.echo(table([[r[h] for h in headers] for r in rows], headers))


@schedules.command("add")
@click.argument("name")
@click.option("--cron", required=True, help="5 fields, 6 with seconds first, or @hourly/@daily/...")
@click.option("--task", help="The task to enqueue at each fire.")
@click.option(
    "--refresh-view", metavar="VIEW", help="Refresh this materialized view (schema.name) instead of a task."
)
@click.option(
    "--args", "args_json", default="{}", show_default=True, help="The task's arguments as a JSON object."
)
@click.option(
    "--timezone", "--tz", default="UTC", show_default=True, help="IANA time zone of the cron times."
)
@click.option("--queue", "-q")
@click.option("--priority", "-p")
@click.option("--max-attempts", type=ATTEMPTS)
@click.option(
    "--catch-up",
    type=click.Choice(["once", "skip"]),
    default="once",
    show_default=True,
    help="What to do with fires missed while no scheduler ran.",
)
@click.option("--replace", is_flag=True, help="Redefine the schedule if it exists.")
@click.option("--tasks", "tasks_modules", envvar="CONVEYOR_TASKS", default="tasks", show_default=True)
@click.pass_obj
@handle_errors
def schedules_add(
    ctx: Context,
    name: str,
    cron: str,
    task: str | None,
    refresh_view: str | None,
    args_json: str,
    timezone: str,
    queue: str | None,
    priority: str | None,
    max_attempts: int | None,
    catch_up: str,
    replace: bool,
    tasks_modules: str,
) -> None:
    """Add a schedule NAME that enqueues a task (or refreshes a view) at each fire of --cron."""
    if (task is None) == (refresh_view is None):
        raise ConveyorError("give --task or --refresh-view (one of them)")
    args = json_object(args_json)
    if refresh_view is not None:
        if args:
            raise ConveyorError("--refresh-view takes no --args")
        task, args = REFRESH_TASK, {"view": refresh_view}  # ops checks that it is one
    load_tasks(tasks_modules)
    definition = {
        "cron": cron,
        "task": task,
        "args": args,
        "timezone": timezone,
        "queue": queue,
        "priority": priority,
        "max_attempts": max_attempts,
        "catch_up": catch_up,
    }
    run_coroutine(
        with_client(ctx, lambda c: ops.create_schedule(c, LOCAL_ADMIN, name, definition, replace=replace))
    )
    click.echo(f"schedule {name!r} {'redefined' if replace else 'added'}: {cron} ({timezone})")


def _schedule_action(
    verb: str, done: str, operation: Callable[[Conveyor, Principal, str], Coroutine[Any, Any, Any]]
) -> None:
    @schedules.command(verb)
    @click.argument("name")
    @click.pass_obj
    @handle_errors
    def action(ctx: Context, name: str) -> None:
        result = run_coroutine(with_client(ctx, lambda c: operation(c, LOCAL_ADMIN, name)))
        click.echo(f"schedule {name!r} {done}" + (f": job {result}" if verb == "trigger" else ""))

    action.__doc__ = {
        "pause": "Stop a schedule firing.",
        "resume": "Let a schedule fire again (its catch-up policy decides about missed fires).",
        "trigger": "Enqueue the schedule's job now, without changing its cadence.",
        "remove": "Delete a schedule.",
    }[verb]


for _verb, _done, _operation in (
    ("pause", "paused", ops.pause_schedule),
    ("resume", "resumed", ops.resume_schedule),
    ("trigger", "triggered", ops.trigger_schedule),
    ("remove", "removed", ops.remove_schedule),
):
    _schedule_action(_verb, _done, _operation)


@schedules.command("fires")
@click.argument("name")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@json_option
@click.pass_obj
@handle_errors
def schedules_fires(ctx: Context, name: str, limit: int, as_json: bool) -> None:
    """The latest fires of a schedule, with their jobs."""
    rows = run_coroutine(with_client(ctx, lambda c: ops.schedule_fires(c, LOCAL_ADMIN, name, limit=limit)))
    if as_json:
        echo_json(rows)
        return
    headers = ["fire_time", "kind", "window_end", "job_id", "fired_at"]
    click.echo(table([[r[h] for h in headers] for r in rows], headers))
