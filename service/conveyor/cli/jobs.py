"""Commands on jobs: enqueue, and `conveyor jobs show/list`, through conveyor.ops as the
local admin (conveyor.ops.roles.LOCAL_ADMIN)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import click

from ..errors import ConveyorError
from ..ops import jobs as ops
from ..ops.roles import LOCAL_ADMIN
from ..queue import pages
from ..queue.client import Conveyor
from ..queue.enqueue import JobRequest
from ..queue.filters import JOB_STATES
from ..queue.pages import MAX_PAGE, Page
from .common import (
    ATTEMPTS,
    JOB_ID,
    Context,
    Duration,
    Moment,
    cell,
    echo_errors,
    echo_json,
    handle_errors,
    json_object,
    json_option,
    load_tasks,
    run_coroutine,
    table,
    with_client,
)

T = TypeVar("T")


@click.command()
@click.argument("task")
@click.option("--args", "args_json", default="{}", show_default=True, help="Arguments as a JSON object.")
@click.option("--queue", "-q")
@click.option("--priority", "-p", help="critical, high, normal, low or 0-3.")
@click.option(
    "--delay", type=Duration(), help="How long to wait before the job may run (90 is seconds; 30m, 2h ...)."
)
@click.option(
    "--run-at",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"]),
    help="ISO time with offset.",
)
@click.option("--unique-key")
@click.option("--max-attempts", type=ATTEMPTS)
@click.option("--tasks", "tasks_modules", envvar="CONVEYOR_TASKS", default="tasks", show_default=True)
@click.pass_obj
@handle_errors
def enqueue(
    ctx: Context,
    task: str,
    args_json: str,
    queue: str | None,
    priority: str | None,
    delay: timedelta | None,
    run_at: datetime | None,
    unique_key: str | None,
    max_attempts: int | None,
    tasks_modules: str,
) -> None:
    """Enqueue one job of TASK; prints its id."""
    args = json_object(args_json)
    load_tasks(tasks_modules)

    request = JobRequest(
        task,
        args,
        queue=queue,
        priority=priority,
        delay=delay,
        run_at=run_at,
        unique_key=unique_key,
        max_attempts=max_attempts,
    )

    async def go(client: Conveyor) -> int:
        return await ops.enqueue(client, LOCAL_ADMIN, request)

    click.echo(run_coroutine(with_client(ctx, go)))


@click.group()
def jobs() -> None:
    """Look at jobs, wherever they are (waiting, running, finished or dead)."""


@jobs.command("show")
@click.argument("job_id", type=JOB_ID)
@json_option
@click.pass_obj
@handle_errors
def jobs_show(ctx: Context, job_id: int, as_json: bool) -> None:
    """One job: its arguments, state, attempts, progress, result, errors and timeline."""
    job = run_coroutine(with_client(ctx, lambda c: ops.get_job(c, LOCAL_ADMIN, job_id)))
    events = job.pop("timeline")
    if as_json:
        echo_json({**job, "timeline": [{"at": at, "event": event} for at, event in events]})
        return
    rows = [
        ("id", job["id"]),
        ("queue", job["queue"]),
        ("task", job["task"]),
        ("state", job["state"]),
        ("priority", job.get("priority")),
        ("attempts", f"{job['attempt']}/{job['max_attempts']}"),
        ("unique_key", job.get("unique_key")),
        ("worker", job.get("worker_id")),
    ]
    for key, value in rows:
        click.echo(f"{key + ':':14}{cell(value)}")
    if job.get("progress") is not None and job["state"] not in ("completed", "dead"):
        message = job.get("progress_message")
        click.echo(f"{'progress:':14}{job['progress']}%" + (f" {message}" if message else ""))
    click.echo(f"{'args:':14}{json.dumps(job['args'])}")
    if job.get("result") is not None:
        click.echo(f"{'result:':14}{json.dumps(job['result'])}")
    click.echo("\ntimeline:")
    for at, event in events:
        click.echo(f"  {cell(at)}  {event}")
    echo_errors(job.get("errors") or [])


def filter_options(func: Callable[..., T]) -> Callable[..., T]:
    """The filters shared by `jobs list` and `history list` (their states differ)."""
    for option in reversed(
        [
            click.option("--queue", "-q"),
            click.option("--task"),
            click.option("--key", help="The job's limit key."),
            click.option("--unique-key"),
            click.option(
                "--enqueued-after", type=Moment(), help="ISO time with offset, or a duration ago (2h)."
            ),
            click.option("--enqueued-before", type=Moment()),
            click.option("--finished-after", type=Moment(), help="Finished (or died) at or after this time."),
            click.option("--finished-before", type=Moment()),
            click.option("--limit", type=click.IntRange(min=1, max=MAX_PAGE), default=50, show_default=True),
            click.option("--cursor", help="The next page: the cursor the page before printed."),
        ]
    ):
        func = option(func)
    return func


@jobs.command("list")
@click.option(
    "--state", "states", type=click.Choice(JOB_STATES), multiple=True, help="Repeat for several states."
)
@click.option("--id", "id_prefix", metavar="DIGITS", help="Jobs whose id starts with these digits.")
@filter_options
@click.option("--before", type=JOB_ID, metavar="ID", help="Start below this job id (instead of --cursor).")
@json_option
@click.pass_obj
@handle_errors
def jobs_list(
    ctx: Context,
    states: tuple[str, ...],
    id_prefix: str | None,
    before: int | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Jobs wherever they are, newest (highest id) first; a full page ends with the --cursor of
    the next one."""
    if before is not None:
        if options["cursor"] is not None:
            raise ConveyorError("give --cursor or --before, not both")
        options["cursor"] = pages.encode(pages.JOBS, pages.Position(before))
    page = run_coroutine(
        with_client(
            ctx,
            lambda c: ops.search_jobs(c, LOCAL_ADMIN, state=states or None, id_prefix=id_prefix, **options),
        )
    )
    echo_page(page, "jobs", as_json)


def echo_page(page: Page, what: str, as_json: bool) -> None:
    """A page of jobs as a table (or JSON: the rows under ``what``, and ``next_cursor``), then
    how to get the next page."""
    if as_json:
        echo_json({what: page.items, "next_cursor": page.next_cursor})
        return
    headers = ["id", "queue", "task", "state", "attempts", "enqueued_at", "finished_at", "last_error"]
    rows = [
        [
            r["id"],
            r["queue"],
            r["task"],
            r["state"],
            f"{r['attempt']}/{r['max_attempts']}",
            r["enqueued_at"],
            r["finished_at"],
            r["last_error"],
        ]
        for r in page.items
    ]
    click.echo(table(rows, headers))
    if page.next_cursor is not None:
        click.echo(f"\nnext page: --cursor {page.next_cursor}")
