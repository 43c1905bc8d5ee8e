"""`conveyor dlq`: inspect, retry and purge dead jobs (through conveyor.ops as the local admin)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta

import click

from ..errors import ConveyorError, NotFoundError
from ..ops import dead_jobs as ops
from ..ops import jobs as job_ops
from ..ops.roles import LOCAL_ADMIN
from ..queue.client import Conveyor
from ..queue.pages import MAX_PAGE
from .common import (
    JOB_ID,
    Context,
    Duration,
    Moment,
    cell,
    echo_errors,
    echo_json,
    handle_errors,
    json_option,
    run_coroutine,
    table,
    with_client,
)


@click.group()
def dlq() -> None:
    """Inspect, retry and purge dead jobs (the dead-letter queue)."""


@dlq.command("list")
@click.option("--queue", "-q")
@click.option("--task")
@click.option("--died-after", type=Moment(), help="ISO time with offset, or a duration ago (2h).")
@click.option("--died-before", type=Moment())
@click.option("--limit", type=click.IntRange(min=1, max=MAX_PAGE), default=50, show_default=True)
@click.option("--cursor", help="The next page: the cursor the page before printed.")
@json_option
@click.pass_obj
@handle_errors
def dlq_list(
    ctx: Context,
    queue: str | None,
    task: str | None,
    died_after: datetime | None,
    died_before: datetime | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Dead jobs, the latest death first; a full page ends with the --cursor of the next one."""
    page = run_coroutine(
        with_client(
            ctx,
            lambda c: ops.dead_letters(
                c,
                LOCAL_ADMIN,
                queue=queue,
                task=task,
                died_after=died_after,
                died_before=died_before,
                limit=limit,
                cursor=cursor,
            ),
        )
    )
    if as_json:
        echo_json({"dead_jobs": page.items, "next_cursor": page.next_cursor})
        return
    headers = ["id", "queue", "task", "attempts", "died_at", "last_error"]
    click.echo(
        table(
            [
                [
                    r["id"],
                    r["queue"],
                    r["task"],
                    f"{r['attempt']}/{r['max_attempts']}",
                    r["died_at"],
                    r["last_error"],
                ]
                for r in page.items
            ],
            headers,
        )
    )
    if page.next_cursor is not None:
        click.echo(f"\nnext page: --cursor {page.next_cursor}")


@dlq.command("show")
@click.argument("job_id", type=JOB_ID)
@json_option
@click.pass_obj
@handle_errors
def dlq_show(ctx: Context, job_id: int, as_json: bool) -> None:
    job = run_coroutine(with_client(ctx, lambda c: ops.get_dead(c, LOCAL_ADMIN, job_id)))
    if as_json:
        echo_json(job)
        return
    for key in (
        "id",
        "queue",
        "task",
        "priority",
        "attempt",
        "max_attempts",
        "enqueued_at",
        "died_at",
        "unique_key",
    ):
        click.echo(f"{key + ':':14}{cell(job[key])}")
    click.echo(f"{'args:':14}{json.dumps(job['args'])}")
    echo_errors(job["errors"])


def _ids_or_all(ids: Sequence[int], all_: bool, what: str) -> None:
    if not ids and not all_:
        raise ConveyorError(
            f"name the dead jobs to {what} by id, or pass --all (with --queue/--task to narrow it)"
        )
    if ids and all_:
        raise ConveyorError("give ids or --all, not both")


@dlq.command("retry")
@click.argument("job_ids", type=JOB_ID, nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead job (matching the filters).")
@click.option("--queue", "-q", help="With --all: of this queue.")
@click.option("--task", help="With --all: of this task.")
@click.option("--died-after", type=Moment(), help="With --all: died at or after this time.")
@click.option("--died-before", type=Moment(), help="With --all: died before this time.")
@click.option("--limit", type=click.IntRange(min=1), help="With --all: at most this many, oldest id first.")
@click.pass_obj
@handle_errors
def dlq_retry(
    ctx: Context,
    job_ids: tuple[int, ...],
    all_: bool,
    queue: str | None,
    task: str | None,
    died_after: datetime | None,
    died_before: datetime | None,
    limit: int | None,
) -> None:
    """Put dead jobs back in their queue with a fresh attempt budget.

    Says what became of each: retried, or (on stderr, and exit status 1) not found, not
    dead, or kept dead (its unique key is taken by a live job)."""
    if not all_:
        # The filters choose among every dead job: given ids, they would be silently ignored.
        given = [
            option
            for option, value in (
                ("--queue", queue),
                ("--task", task),
                ("--died-after", died_after),
                ("--died-before", died_before),
                ("--limit", limit),
            )
            if value is not None
        ]
        if given:
            raise click.UsageError(
                f"{', '.join(given)} narrow{'s' if len(given) == 1 else ''} --all: "
                "pass --all with them, or name the jobs by id alone"
            )
    _ids_or_all(job_ids, all_, "retry")

    async def go(client: Conveyor) -> tuple[list[int], dict[int, str]]:
        if all_:
            done = await ops.retry_many(
                client,
                LOCAL_ADMIN,
                queue=queue,
                task=task,
                died_after=died_after,
                died_before=died_before,
                limit=limit,
            )
            return done.retried, done.refused
        done = await ops.retry_many(client, LOCAL_ADMIN, ids=job_ids)
        return done.retried, {job_id: await _why(client, job_id, why) for job_id, why in done.refused.items()}

    retried, failed = run_coroutine(with_client(ctx, go))
    click.echo(f"retried {len(retried)} job(s)" + (": " + ", ".join(map(str, retried)) if retried else ""))
    for job_id, outcome in failed.items():
        click.echo(f"conveyor: error: job {job_id}: {outcome}", err=True)
    if failed:
        sys.exit(1)


async def _why(client: Conveyor, job_id: int, refusal: str) -> str:
    """Why a job named by id did not go back: not found, not dead, or kept dead (``refusal``)."""
    try:
        job = await job_ops.get_job(client, LOCAL_ADMIN, job_id)
    except NotFoundError:
        return "not found"
    if job["state"] != "dead":
        return f"not dead (it is {job['state']})"
    return f"stays dead: {refusal}"


@dlq.command("purge")
@click.argument("job_ids", type=JOB_ID, nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead job (matching the filters).")
@click.option("--queue", "-q")
@click.option("--task")
@click.option(
    "--older-than",
    type=Duration("h"),
    help="Only jobs dead for longer than this (7d, 12h, 30m; a bare number is in hours).",
)
@click.option("--died-after", type=Moment(), help="With --all: died at or after this time.")
@click.option("--died-before", type=Moment(), help="With --all: died before this time.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation of --all.")
@click.pass_obj
@handle_errors
def dlq_purge(
    ctx: Context,
    job_ids: tuple[int, ...],
    all_: bool,
    queue: str | None,
    task: str | None,
    older_than: timedelta | None,
    died_after: datetime | None,
    died_before: datetime | None,
    yes: bool,
) -> None:
    """Delete dead jobs for good (--all asks first, unless --yes)."""
    _ids_or_all(job_ids, all_, "purge")
    if all_ and not yes:
        matching = [f"{name} {value}" for name, value in (("in queue", queue), ("of task", task)) if value]
        if older_than is not None:
            matching.append(f"dead for longer than {older_than}")
        if died_after is not None or died_before is not None:
            matching.append(f"died in [{cell(died_after)}, {cell(died_before)})")
        scope = "every dead job" + (" " + ", ".join(matching) if matching else "")
        try:
            confirmed = click.confirm(f"Delete {scope} for good?", default=False)
        except click.Abort:  # no answer (no terminal, end of input)
            confirmed = False
        if not confirmed:
            raise ConveyorError(f"nothing purged: confirm deleting {scope}, or pass --yes")
    age = older_than
    filtered = any(v is not None for v in (queue, task, older_than, died_after, died_before))
    count = run_coroutine(
        with_client(
            ctx,
            lambda c: ops.purge(
                c,
                LOCAL_ADMIN,
                ids=list(job_ids) or None,
                queue=queue,
                task=task,
                older_than=age,
                died_after=died_after,
                died_before=died_before,
                everything=all_ and not filtered,
            ),
        )
    )
    click.echo(f"purged {count} dead job(s)")
