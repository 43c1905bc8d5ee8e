"""The ``conveyor`` command.

User mistakes (bad JSON, unknown task or queue, no database) print one line starting
``conveyor: error:`` and exit 1; usage errors exit 2. Tracebacks are for bugs only.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import psycopg

from . import event_loop
from .db import embedded
from .errors import ConfigurationError, ConveyorError
from .queue.client import Conveyor, sql_error_message
from .queue.matviews import REFRESH_TASK
from .queue.scheduler import Scheduler, SchedulerConfig
from .queue.worker import Worker, WorkerConfig
from .settings import Settings
from .tasks import default_registry

T = TypeVar("T")
log = logging.getLogger("conveyor")

DEFAULT_DATA_DIR = ".conveyor"


class Context:
    def __init__(self, database_url: str | None, schema: str | None, data_dir: str) -> None:
        self.settings = Settings.from_env(database_url, schema)
        self.data_dir = Path(data_dir)

    @property
    def schema(self) -> str:
        return self.settings.schema

    def database_url(self) -> str:
        """The configured database, else the embedded one `conveyor dev` left running here."""
        if self.settings.database_url:
            return self.settings.database_url
        url = embedded.running_url(self.data_dir / "pgdata")
        if url is None:
            raise ConfigurationError(
                "no database: set DATABASE_URL (or CONVEYOR_DATABASE_URL), "
                f"or start `conveyor dev` in this folder (it keeps its database in {self.data_dir}/)"
            )
        return url

    def client(self) -> Conveyor:
        return Conveyor(self.database_url(), schema=self.schema)


def _fail(message: str) -> NoReturn:
    click.echo(f"conveyor: error: {message}", err=True)
    sys.exit(1)


def handle_errors(func: Callable[..., T]) -> Callable[..., T]:
    """Turn the errors a user can cause into one clear line and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except ConveyorError as exc:
            _fail(str(exc))
        except Exception as exc:
            error = _database_error(exc)
            if error is None:
                raise  # a bug: let its traceback show
            if isinstance(error, psycopg.OperationalError):
                text = str(error).strip()
                _fail(f"cannot reach the database: {text.splitlines()[0] if text else type(error).__name__}")
            if isinstance(error, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedFunction):
                schema = click.get_current_context().find_object(Context)
                where = f"schema {schema.schema!r}" if schema else "this schema"
                _fail(f"Conveyor is not installed in {where}: run `conveyor migrate`")
            _fail(sql_error_message(error))

    return wrapper


def _database_error(exc: BaseException) -> psycopg.Error | None:
    """The psycopg error behind an exception (SQLAlchemy wraps them for Alembic)."""
    if isinstance(exc, psycopg.Error):
        return exc
    original = getattr(exc, "orig", None)  # sqlalchemy.exc.DBAPIError
    return original if isinstance(original, psycopg.Error) else None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def _with_client(ctx: Context, action: Callable[[Conveyor], Coroutine[Any, Any, T]]) -> T:
    async with ctx.client() as client:
        return await action(client)


def _load_tasks(modules: str | None) -> None:
    """Import task modules; the default `tasks` may be absent, a named module may not."""
    source = click.get_current_context().get_parameter_source("tasks_modules")
    explicit = source is not click.core.ParameterSource.DEFAULT
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    names = [m.strip() for m in (modules or "").split(",") if m.strip()]
    if not explicit and names == ["tasks"] and importlib.util.find_spec("tasks") is None:
        log.warning("no task module `tasks` here; pass --tasks or set CONVEYOR_TASKS")
        return
    default_registry.import_modules(names)


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S%z")
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)


# -- the command group -----------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--database-url", envvar="CONVEYOR_DATABASE_URL", help="PostgreSQL URL (else DATABASE_URL).")
@click.option("--schema", envvar="CONVEYOR_SCHEMA", default="conveyor", show_default=True)
@click.option(
    "--data-dir",
    envvar="CONVEYOR_DATA_DIR",
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Where `conveyor dev` keeps the embedded database.",
)
@click.pass_context
def main(click_ctx: click.Context, database_url: str | None, schema: str, data_dir: str) -> None:
    """Conveyor: background jobs and schedules on PostgreSQL."""
    try:
        click_ctx.obj = Context(database_url, schema, data_dir)
    except ConveyorError as exc:
        _fail(str(exc))


@main.command()
@click.option("--revision", default="head", show_default=True, help="Upgrade to this revision.")
@click.option(
    "--downgrade", "down_to", metavar="REVISION", help="Downgrade to this revision (base: remove all)."
)
@click.option("--show", is_flag=True, help="Print the current revision and exit.")
@click.pass_obj
@handle_errors
def migrate(ctx: Context, revision: str, down_to: str | None, show: bool) -> None:
    """Install or upgrade Conveyor's schema."""
    from .db import migrations  # Alembic and SQLAlchemy take a while to import

    url = ctx.database_url()
    if show:
        click.echo(migrations.current(url, ctx.schema) or "none")
        return
    if down_to:
        migrations.downgrade(url, ctx.schema, down_to)
        click.echo(f"schema {ctx.schema!r} downgraded to {down_to}")
        return
    migrations.upgrade(url, ctx.schema, revision)
    click.echo(f"schema {ctx.schema!r} at {migrations.current(url, ctx.schema)}")


def _worker_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--queues", "-q", help="Comma-separated queues (default: those the tasks declare, and default)."
        ),
        click.option("--concurrency", "-c", type=click.IntRange(min=1), default=10, show_default=True),
        click.option(
            "--tasks",
            "tasks_modules",
            envvar="CONVEYOR_TASKS",
            default="tasks",
            show_default=True,
            help="Comma-separated task modules to import.",
        ),
        click.option(
            "--lease", type=click.FloatRange(min=1), default=30.0, show_default=True, help="Lease seconds."
        ),
        click.option(
            "--grace",
            type=click.FloatRange(min=0),
            default=25.0,
            show_default=True,
            help="Seconds running jobs get to finish on stop.",
        ),
        click.option("--poll-interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True),
        click.option("--verbose", "-v", is_flag=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _worker_config(
    queues: str | None, concurrency: int, lease: float, grace: float, poll_interval: float
) -> WorkerConfig:
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    return WorkerConfig(
        queues=names, concurrency=concurrency, lease=lease, grace=grace, poll_interval=poll_interval
    )


@main.command()
@_worker_options
@click.pass_obj
@handle_errors
def worker(
    ctx: Context,
    queues: str | None,
    concurrency: int,
    tasks_modules: str,
    lease: float,
    grace: float,
    poll_interval: float,
    verbose: bool,
) -> None:
    """Run jobs until SIGTERM or Ctrl-C (then finish running jobs within --grace)."""
    _setup_logging(verbose)
    _load_tasks(tasks_modules)
    url = ctx.database_url()
    _require_schema(url, ctx.schema)
    config = _worker_config(queues, concurrency, lease, grace, poll_interval)
    event_loop.run(_serve(Worker(url, schema=ctx.schema, config=config)))


def _require_schema(url: str, schema: str) -> None:
    from .db import migrations  # Alembic and SQLAlchemy take a while to import

    at = migrations.current(url, schema)
    if at is None:
        raise ConfigurationError(f"Conveyor is not installed in schema {schema!r}: run `conveyor migrate`")
    if at != migrations.head():
        raise ConfigurationError(
            f"schema {schema!r} is at revision {at}, this Conveyor needs {migrations.head()}: "
            "run `conveyor migrate`"
        )


async def _serve(worker: Worker | None = None, scheduler: Scheduler | None = None) -> None:
    """Run a worker and/or a scheduler until SIGTERM/SIGINT: the first signal stops them
    gracefully, a second one stops the worker at once."""
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        name = signal.Signals(signum).name
        if scheduler is not None:
            scheduler.stop()
        if worker is None:
            log.info("%s: stopping", name)
        elif signals == 1:
            log.info("%s: stopping (running jobs get %gs to finish)", name, worker.config.grace)
            worker.stop()
        else:
            log.warning("%s again: handing running jobs back now", name)
            worker.stop(force=True)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    parts = [asyncio.create_task(part.run()) for part in (worker, scheduler) if part is not None]
    try:
        done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_EXCEPTION)
        if any(task.exception() for task in done):
            # One part failed: stop the other rather than run on half-alive.
            if worker is not None:
                worker.stop(force=True)
            if scheduler is not None:
                scheduler.stop()
        await asyncio.gather(*parts)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    if worker is None:
        return
    log.info("worker %s stopped", worker.id)
    if worker.busy_threads:
        # Python cannot stop a thread; their jobs were handed back, so do not wait for them.
        log.warning("leaving %d sync tasks still running in threads", worker.busy_threads)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@main.command()
@click.option(
    "--tasks",
    "tasks_modules",
    envvar="CONVEYOR_TASKS",
    default="tasks",
    show_default=True,
    help="Task modules whose declared schedules to write on start.",
)
@click.option(
    "--lease", type=click.FloatRange(min=3), default=15.0, show_default=True, help="Leader lease seconds."
)
@click.option(
    "--prune-schedules",
    is_flag=True,
    help="Remove schedules declared in code that these task modules no longer declare.",
)
@click.option(
    "--tick", type=click.FloatRange(min=0.1), default=1.0, show_default=True, help="Seconds between rounds."
)
@click.option("--verbose", "-v", is_flag=True)
@click.pass_obj
@handle_errors
def scheduler(
    ctx: Context, tasks_modules: str, lease: float, prune_schedules: bool, tick: float, verbose: bool
) -> None:
    """Fire cron schedules and keep house, when elected (run as many as you like)."""
    _setup_logging(verbose)
    _load_tasks(tasks_modules)
    url = ctx.database_url()
    _require_schema(url, ctx.schema)
    config = SchedulerConfig(lease=lease, tick=tick, prune_declared=prune_schedules)
    event_loop.run(_serve(scheduler=Scheduler(url, schema=ctx.schema, config=config)))


@main.command()
@_worker_options
@click.pass_obj
@handle_errors
def dev(
    ctx: Context,
    queues: str | None,
    concurrency: int,
    tasks_modules: str,
    lease: float,
    grace: float,
    poll_interval: float,
    verbose: bool,
) -> None:
    """Run Conveyor locally: the embedded PostgreSQL (unless DATABASE_URL is set), migrated, a worker and a scheduler."""
    _setup_logging(verbose)
    if ctx.settings.database_url:
        url = ctx.settings.database_url
        click.echo(f"Conveyor dev: using DATABASE_URL, schema {ctx.schema!r}")
    else:
        pgdata = ctx.data_dir / "pgdata"
        click.echo(f"Conveyor dev: starting the embedded PostgreSQL in {pgdata}/ ...")
        url = embedded.start(pgdata)
        click.echo(f"Conveyor dev: database {url}")
        click.echo(f"Conveyor dev: inspect it with: psql '{url}' (try the view {ctx.schema}.queue_stats)")
    from .db import migrations  # Alembic and SQLAlchemy take a while to import

    migrations.upgrade(url, ctx.schema)
    _load_tasks(tasks_modules)
    config = _worker_config(queues, concurrency, lease, grace, poll_interval)
    click.echo(
        f"Conveyor dev: {len(default_registry)} tasks and {len(default_registry.schedules())} schedules "
        "loaded; worker and scheduler running; Ctrl-C to stop"
    )
    event_loop.run(_serve(Worker(url, schema=ctx.schema, config=config), Scheduler(url, schema=ctx.schema)))


@main.command()
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
    args = _json_object(args_json)
    _load_tasks(tasks_modules)

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

    click.echo(_run(_with_client(ctx, go)))


@main.command()
@click.pass_obj
@handle_errors
def status(ctx: Context) -> None:
    """Per queue: waiting, scheduled, running, completed (24 h), dead, oldest waiting."""
    stats = _run(_with_client(ctx, lambda c: c.queue_stats()))
    headers = [
        "queue",
        "paused",
        "waiting",
        "scheduled",
        "running",
        "completed_24h",
        "dead",
        "oldest_waiting",
    ]
    rows = [
        [s.queue, s.paused, s.waiting, s.scheduled, s.running, s.completed_24h, s.dead, s.oldest_waiting_age]
        for s in stats
    ]
    click.echo(_table(rows, headers))


@main.group()
def queues() -> None:
    """List, create, pause and resume queues."""


@queues.command("list")
@click.pass_obj
@handle_errors
def queues_list(ctx: Context) -> None:
    stats = _run(_with_client(ctx, lambda c: c.queue_stats()))
    click.echo(_table([[s.queue, s.paused] for s in stats], ["queue", "paused"]))


@queues.command("create")
@click.argument("name")
@click.pass_obj
@handle_errors
def queues_create(ctx: Context, name: str) -> None:
    _run(_with_client(ctx, lambda c: c.create_queue(name)))
    click.echo(f"queue {name!r} exists")


@queues.command("pause")
@click.argument("name")
@click.pass_obj
@handle_errors
def queues_pause(ctx: Context, name: str) -> None:
    """Stop workers claiming from a queue (running jobs finish)."""
    _run(_with_client(ctx, lambda c: c.pause_queue(name)))
    click.echo(f"queue {name!r} paused")


@queues.command("resume")
@click.argument("name")
@click.pass_obj
@handle_errors
def queues_resume(ctx: Context, name: str) -> None:
    """Let workers claim from a queue again."""
    _run(_with_client(ctx, lambda c: c.resume_queue(name)))
    click.echo(f"queue {name!r} resumed")


@main.group()
def dlq() -> None:
    """Inspect, retry and purge dead jobs (the dead-letter queue)."""


@dlq.command("list")
@click.option("--queue", "-q")
@click.option("--task")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.pass_obj
@handle_errors
def dlq_list(ctx: Context, queue: str | None, task: str | None, limit: int) -> None:
    rows = _run(_with_client(ctx, lambda c: c.dead_jobs(queue=queue, task=task, limit=limit)))
    headers = ["id", "queue", "task", "attempts", "died_at", "last_error"]
    click.echo(
        _table(
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
    job = _run(_with_client(ctx, lambda c: c.dead_job(job_id)))
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
        click.echo(f"{key + ':':14}{_cell(job[key])}")
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

    retried, refused = _run(_with_client(ctx, go))
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
    count = _run(
        _with_client(
            ctx, lambda c: c.purge_dead(ids=list(job_ids) or None, queue=queue, task=task, older_than=age)
        )
    )
    click.echo(f"purged {count} dead job(s)")


# -- schedules ----------------------------------------------------------------------------


@main.group()
def schedules() -> None:
    """List, add, pause, resume, trigger and remove cron schedules."""


@schedules.command("list")
@click.pass_obj
@handle_errors
def schedules_list(ctx: Context) -> None:
    rows = _run(_with_client(ctx, lambda c: c.schedules()))
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
    click.echo(_table([[r[h] for h in headers] for r in rows], headers))


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
@click.option("--max-attempts", type=click.IntRange(min=1))
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
    args = _json_object(args_json)
    if refresh_view is not None:
        if args:
            raise ConveyorError("--refresh-view takes no --args")
        view = _run(_with_client(ctx, lambda c: c.check_materialized_view(refresh_view)))
        task, args = REFRESH_TASK, {"view": view}
    _load_tasks(tasks_modules)
    assert task is not None

    async def go(client: Conveyor) -> str:
        return await client.create_schedule(
            name,
            cron,
            task,
            args,
            timezone=timezone,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            catch_up=catch_up,
            replace=replace,
        )

    _run(_with_client(ctx, go))
    click.echo(f"schedule {name!r} {'redefined' if replace else 'added'}: {cron} ({timezone})")


def _schedule_action(verb: str, done: str) -> None:
    @schedules.command(verb)
    @click.argument("name")
    @click.pass_obj
    @handle_errors
    def action(ctx: Context, name: str) -> None:
        result = _run(_with_client(ctx, lambda c: getattr(c, f"{verb}_schedule")(name)))
        click.echo(f"schedule {name!r} {done}" + (f": job {result}" if verb == "trigger" else ""))

    action.__doc__ = {
        "pause": "Stop a schedule firing.",
        "resume": "Let a schedule fire again (its catch-up policy decides about missed fires).",
        "trigger": "Enqueue the schedule's job now, without changing its cadence.",
        "remove": "Delete a schedule.",
    }[verb]


for _verb, _done in (
    ("pause", "paused"),
    ("resume", "resumed"),
    ("trigger", "triggered"),
    ("remove", "removed"),
):
    _schedule_action(_verb, _done)


@schedules.command("fires")
@click.argument("name")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.pass_obj
@handle_errors
def schedules_fires(ctx: Context, name: str, limit: int) -> None:
    """The latest fires of a schedule, with their jobs."""
    rows = _run(_with_client(ctx, lambda c: c.schedule_fires(name, limit=limit)))
    headers = ["fire_time", "kind", "window_end", "job_id", "fired_at"]
    click.echo(_table([[r[h] for h in headers] for r in rows], headers))


# -- retention ----------------------------------------------------------------------------


@main.group()
def retention() -> None:
    """Show, change and apply how long finished work is kept."""


@retention.command("show")
@click.pass_obj
@handle_errors
def retention_show(ctx: Context) -> None:
    rows = _run(_with_client(ctx, lambda c: c.retention()))
    headers = ["queue", "completed_keep", "completed_max", "dead_keep", "runs_keep"]
    click.echo(_table([[r[h] for h in headers] for r in rows], headers))


@retention.command("set")
@click.option("--queue", "-q", default="*", show_default=True, help="A queue, or * for the defaults.")
@click.option("--completed", metavar="DURATION", help="Keep finished jobs this long (e.g. 24h, 3d).")
@click.option(
    "--completed-max", type=click.IntRange(min=0), help="Keep at most this many finished jobs per queue."
)
@click.option("--dead", metavar="DURATION", help="Keep dead jobs this long (e.g. 7d).")
@click.option("--runs", metavar="DURATION", help="Keep the run log this long (e.g. 90d).")
@click.pass_obj
@handle_errors
def retention_set(
    ctx: Context,
    queue: str,
    completed: str | None,
    completed_max: int | None,
    dead: str | None,
    runs: str | None,
) -> None:
    """Change the defaults (or one queue's retention); unset options are left as they are."""

    async def go(client: Conveyor) -> None:
        await client.set_retention(
            queue,
            completed_keep=_duration(completed),
            completed_max=completed_max,
            dead_keep=_duration(dead),
            runs_keep=_duration(runs),
        )

    _run(_with_client(ctx, go))
    click.echo(f"retention for {'the defaults' if queue == '*' else repr(queue)} updated")


@retention.command("apply")
@click.pass_obj
@handle_errors
def retention_apply(ctx: Context) -> None:
    """Apply retention now (the elected scheduler does this every 10 minutes)."""
    done = _run(_with_client(ctx, lambda c: c.apply_retention()))
    click.echo(_table([[step, n] for step, n in done.items()], ["step", "affected"]))


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration(text: str | None) -> timedelta | None:
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match is None:
        raise ConveyorError(
            f"duration {text!r} is not valid: use a number and a unit, like 30m, 24h, 7d or 2w"
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConveyorError(
            f"--args is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(value, dict):
        raise ConveyorError(
            f'--args must be a JSON object like \'{{"to": "a@b.c"}}\', got {type(value).__name__}'
        )
    return value
