"""`conveyor dlq`: inspect, retry and purge dead jobs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import timedelta

import click

from ..errors import ConveyorError
from ..queue.client import Conveyor
from .common import Context, cell, handle_errors, run_coroutine, table, with_client


@click.group()
def dlq() -> None:
    """Inspect, retry and purge dead jobs (the dead-letter queue)."""


@dlq.command("list")
@click.option("--queue", "-q")
@click.option("--task")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.pass_obj
@handle_errors
def dlq_list(ctx: Context, queue: str | None, task: str | None, limit: int) -> None:
    rows = run_coroutine(with_client(ctx, lambda c: c.dead_jobs(queue=queue, task=task, limit=limit)))
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
                for r in rows
            ],
            headers,
        )
    )


@dlq.command("show")
@click.argument("job_id", type=int)
@click.pass_obj
@handle_errors
def dlq_show(ctx: Context, job_id: int) -> None:
    job = run_coroutine(with_client(ctx, lambda c: c.dead_job(job_id)))
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
    for error in job["errors"]:
        click.echo(f"\n-- attempt {error.get('attempt')} at {error.get('at')}: {error.get('error')}")
        if error.get("traceback"):
            click.echo(error["traceback"].rstrip())


def _ids_or_all(ids: Sequence[int], all_: bool, what: str) -> None:
    if not ids and not all_:
        raise ConveyorError(
            f"name the dead jobs to {what} by id, or pass --all (with --queue/--task to narrow it)"
        )
    if ids and all_:
        raise ConveyorError("give ids or --all, not both")


@dlq.command("retry")
@click.argument("job_ids", type=int, nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead job (matching --queue/--task).")
@click.option("--queue", "-q")
@click.option("--task")
@click.pass_obj
@handle_errors
def dlq_retry(
    ctx: Context, job_ids: tuple[int, ...], all_: bool, queue: str | None, task: str | None
) -> None:
    """Put dead jobs back in their queue with a fresh attempt budget."""
    _ids_or_all(job_ids, all_, "retry")

    async def go(client: Conveyor) -> tuple[list[int], dict[int, str]]:
        if all_:
            return await client.retry_dead_matching(queue=queue, task=task)
        return [await client.retry_dead(i) for i in job_ids], {}

    retried, refused = run_coroutine(with_client(ctx, go))
    click.echo(f"retried {len(retried)} job(s)" + (": " + ", ".join(map(str, retried)) if retried else ""))
    for job_id, reason in refused.items():
        click.echo(f"job {job_id} stays dead: {reason}", err=True)
    if refused:
        sys.exit(1)


@dlq.command("purge")
@click.argument("job_ids", type=int, nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead job (matching the filters).")
@click.option("--queue", "-q")
@click.option("--task")
@click.option(
    "--older-than", type=click.FloatRange(min=0), help="Only jobs dead for more than this many hours."
)
@click.pass_obj
@handle_errors
def dlq_purge(
    ctx: Context,
    job_ids: tuple[int, ...],
    all_: bool,
    queue: str | None,
    task: str | None,
    older_than: float | None,
) -> None:
    """Delete dead jobs for good."""
    _ids_or_all(job_ids, all_, "purge")
    age = timedelta(hours=older_than) if older_than is not None else None
    count = run_coroutine(
        with_client(
            ctx, lambda c: c.purge_dead(ids=list(job_ids) or None, queue=queue, task=task, older_than=age)
        )
    )
    click.echo(f"purged {count} dead job(s)")
