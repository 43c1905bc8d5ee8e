"""Job control from the command line (docs/job-control.md): `conveyor tasks list|pause|resume`,
`conveyor pause --all` / `conveyor resume --all`, and `conveyor jobs cancel|abort|run-now|delete`
(attached to the `jobs` group). Each prints the state the job or pause ended in; a refusal (a
job that has ended, a running job to delete) is one line on stderr and exit status 1. Each goes
through conveyor.ops as the local admin; a cancel or an abort records the CLI's user and host
as who asked."""

from __future__ import annotations

import dataclasses
import getpass
import socket
from typing import Any

import click

from ..ops import jobs as job_ops
from ..ops import queues as ops
from ..ops.roles import LOCAL_ADMIN, Principal
from ..queue.client import Conveyor
from .common import JOB_ID, Context, echo_json, handle_errors, json_option, run_coroutine, table, with_client
from .jobs import jobs


def _caller() -> str:
    """Who asked, for the job's errors entry."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment: the host still says something
        user = "?"
    return f"cli {user}@{socket.gethostname()}"


def _local_caller() -> Principal:
    """The local admin, named for the job's errors entry as the user and host who asked."""
    return dataclasses.replace(LOCAL_ADMIN, name=_caller())


# -- pauses ------------------------------------------------------------------------------


@click.group()
def tasks() -> None:
    """List tasks; pause or resume one task in every queue."""


@tasks.command("list")
@json_option
@click.pass_obj
@handle_errors
def tasks_list(ctx: Context, as_json: bool) -> None:
    """The tasks workers declared and every paused task, and whether everything is paused."""

    async def read(client: Conveyor) -> tuple[list[dict[str, Any]], bool]:
        return await ops.list_tasks(client, LOCAL_ADMIN), (await ops.pauses(client, LOCAL_ADMIN)).all_paused

    rows, everything = run_coroutine(with_client(ctx, read))
    if as_json:
        echo_json({"tasks": rows, "all_paused": everything})
        return
    click.echo(
        table(
            [[r["name"], r["queue"], r["paused"], r["paused_at"]] for r in rows],
            ["task", "queue", "paused", "paused_at"],
        )
    )
    if everything:
        click.echo("\neverything is paused: `conveyor resume --all` lets jobs start again")


@tasks.command("pause")
@click.argument("name")
@click.pass_obj
@handle_errors
def tasks_pause(ctx: Context, name: str) -> None:
    """Stop workers starting jobs of task NAME, in every queue (running ones finish)."""
    run_coroutine(with_client(ctx, lambda c: ops.pause_task(c, LOCAL_ADMIN, name)))
    click.echo(f"task {name!r} paused")


@tasks.command("resume")
@click.argument("name")
@click.pass_obj
@handle_errors
def tasks_resume(ctx: Context, name: str) -> None:
    """Let jobs of task NAME start again."""
    run_coroutine(with_client(ctx, lambda c: ops.resume_task(c, LOCAL_ADMIN, name)))
    click.echo(f"task {name!r} resumed")


_WHAT = (
    "say what to pause: --all (a queue: `conveyor queues pause NAME`; a task: `conveyor tasks pause NAME`)"
)


@click.command()
@click.option("--all", "everything", is_flag=True, help="Every job in every queue.")
@click.pass_obj
@handle_errors
def pause(ctx: Context, everything: bool) -> None:
    """Stop workers starting any job (--all); running jobs finish."""
    if not everything:
        raise click.UsageError(_WHAT)
    run_coroutine(with_client(ctx, lambda c: ops.pause_all(c, LOCAL_ADMIN)))
    click.echo("everything paused: no job starts until `conveyor resume --all`")


@click.command()
@click.option("--all", "everything", is_flag=True, help="End `conveyor pause --all`.")
@click.pass_obj
@handle_errors
def resume(ctx: Context, everything: bool) -> None:
    """Let jobs start again after `conveyor pause --all` (paused queues and tasks stay paused)."""
    if not everything:
        raise click.UsageError(_WHAT.replace("pause", "resume"))
    run_coroutine(with_client(ctx, lambda c: ops.resume_all(c, LOCAL_ADMIN)))
    click.echo("everything resumed")


# -- one job -----------------------------------------------------------------------------

_ENDED = {
    "cancelled": "job {id} cancelled: it will not run",
    "aborting": "job {id}: abort requested; the worker running it stops it and records it as cancelled",
    "available": "job {id} is available now",
    "deleted": "job {id} deleted",
}


def _report(job_id: int, state: str, as_json: bool) -> None:
    if as_json:
        echo_json({"id": job_id, "state": state})
    else:
        click.echo(_ENDED.get(state, "job {id}: " + state).format(id=job_id))


@jobs.command("cancel")
@click.argument("job_id", type=JOB_ID)
@click.option("--reason", help="Recorded in the job's errors.")
@json_option
@click.pass_obj
@handle_errors
def jobs_cancel(ctx: Context, job_id: int, reason: str | None, as_json: bool) -> None:
    """Cancel a waiting, scheduled or blocked job (it never runs); a running one is aborted."""
    state = run_coroutine(with_client(ctx, lambda c: job_ops.cancel(c, _local_caller(), job_id, reason)))
    _report(job_id, state, as_json)


@jobs.command("abort")
@click.argument("job_id", type=JOB_ID)
@click.option("--reason", help="Recorded in the job's errors.")
@json_option
@click.pass_obj
@handle_errors
def jobs_abort(ctx: Context, job_id: int, reason: str | None, as_json: bool) -> None:
    """Stop a running job on whichever worker runs it; it ends as cancelled."""
    state = run_coroutine(with_client(ctx, lambda c: job_ops.abort(c, _local_caller(), job_id, reason)))
    _report(job_id, state, as_json)


@jobs.command("run-now")
@click.argument("job_id", type=JOB_ID)
@json_option
@click.pass_obj
@handle_errors
def jobs_run_now(ctx: Context, job_id: int, as_json: bool) -> None:
    """Make a scheduled job (or a retry waiting out its backoff) available at once."""
    _report(
        job_id, run_coroutine(with_client(ctx, lambda c: job_ops.run_now(c, LOCAL_ADMIN, job_id))), as_json
    )


@jobs.command("delete")
@click.argument("job_id", type=JOB_ID)
@json_option
@click.pass_obj
@handle_errors
def jobs_delete(ctx: Context, job_id: int, as_json: bool) -> None:
    """Remove a waiting or scheduled job, leaving no history (a running one is refused)."""
    _report(
        job_id, run_coroutine(with_client(ctx, lambda c: job_ops.delete_job(c, LOCAL_ADMIN, job_id))), as_json
    )
