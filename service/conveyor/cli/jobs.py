"""Commands on jobs: enqueue."""

from __future__ import annotations

from datetime import datetime

import click

from ..queue.client import Conveyor
from .common import Context, handle_errors, json_object, load_tasks, run_coroutine, with_client


@click.command()
@click.argument("task")
@click.option("--args", "args_json", default="{}", show_default=True, help="Arguments as a JSON object.")
@click.option("--queue", "-q")
@click.option("--priority", "-p", help="critical, high, normal, low or 0-3.")
@click.option("--delay", type=click.FloatRange(min=0), help="Seconds to wait before the job may run.")
@click.option(
    "--run-at",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"]),
    help="ISO time with offset.",
)
@click.option("--unique-key")
@click.option("--max-attempts", type=click.IntRange(min=1))
@click.option("--tasks", "tasks_modules", envvar="CONVEYOR_TASKS", default="tasks", show_default=True)
@click.pass_obj
@handle_errors
def enqueue(
    ctx: Context,
    task: str,
    args_json: str,
    queue: str | None,
    priority: str | None,
    delay: float | None,
    run_at: datetime | None,
    unique_key: str | None,
    max_attempts: int | None,
    tasks_modules: str,
) -> None:
    """Enqueue one job of TASK; prints its id."""
    args = json_object(args_json)
    load_tasks(tasks_modules)

    async def go(client: Conveyor) -> int:
        return await client.enqueue(
            task,
            args,
            queue=queue,
            priority=priority,
            delay=delay,
            run_at=run_at,
            unique_key=unique_key,
            max_attempts=max_attempts,
        )

    click.echo(run_coroutine(with_client(ctx, go)))
