"""Commands that run Conveyor: migrate, worker, scheduler and dev."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from .. import event_loop
from ..db import embedded
from ..errors import ConfigurationError
from ..queue.roster import read_scheduler_status
from ..queue.scheduler import Scheduler, SchedulerConfig
from ..queue.worker import Worker, WorkerConfig
from ..tasks import default_registry
from .common import Context, Duration, handle_errors, load_tasks, log, setup_logging
from .keys import make_dev_key

if TYPE_CHECKING:
    import uvicorn


@click.command()
@click.option("--revision", default="head", show_default=True, help="Upgrade to this revision.")
@click.option(
    "--downgrade", "down_to", metavar="REVISION", help="Downgrade to this revision (base: remove all)."
)
@click.option("--show", is_flag=True, help="Print the current revision and exit.")
@click.pass_obj
@handle_errors
def migrate(ctx: Context, revision: str, down_to: str | None, show: bool) -> None:
    """Install or upgrade Conveyor's schema."""
    from ..db import migrations  # Alembic and SQLAlchemy take a while to import

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
            "--lease",
            type=Duration(minimum=1),
            default="30s",
            show_default=True,
            help="How long a claimed job stays leased without a heartbeat.",
        ),
        click.option(
            "--grace",
            type=Duration(),
            default="25s",
            show_default=True,
            help="How long running jobs get to finish on stop.",
        ),
        click.option(
            "--poll-interval",
            type=Duration(minimum=0.01),
            default="1s",
            show_default=True,
            help="How often to look for jobs when no notification comes.",
        ),
        click.option("--verbose", "-v", is_flag=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _worker_config(
    queues: str | None, concurrency: int, lease: timedelta, grace: timedelta, poll_interval: timedelta
) -> WorkerConfig:
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    return WorkerConfig(
        queues=names,
        concurrency=concurrency,
        lease=lease.total_seconds(),
        grace=grace.total_seconds(),
        poll_interval=poll_interval.total_seconds(),
    )


@click.command()
@_worker_options
@click.pass_obj
@handle_errors
def worker(
    ctx: Context,
    queues: str | None,
    concurrency: int,
    tasks_modules: str,
    lease: timedelta,
    grace: timedelta,
    poll_interval: timedelta,
    verbose: bool,
) -> None:
    """Run jobs until SIGTERM or Ctrl-C (then finish running jobs within --grace)."""
    setup_logging(ctx, verbose)
    load_tasks(tasks_modules, required=True)
    url = ctx.database_url()
    require_schema(url, ctx.schema)
    config = _worker_config(queues, concurrency, lease, grace, poll_interval)
    event_loop.run(serve(Worker(url, schema=ctx.schema, config=config)))


def require_schema(url: str, schema: str) -> None:
    from ..db import migrations  # Alembic and SQLAlchemy take a while to import

    at = migrations.current(url, schema)
    if at is None:
        raise ConfigurationError(f"Conveyor is not installed in schema {schema!r}: run `conveyor migrate`")
    if at != migrations.head():
        raise ConfigurationError(
            f"schema {schema!r} is at revision {at}, this Conveyor needs {migrations.head()}: "
            "run `conveyor migrate`"
        )


class ApiPart:
    """The HTTP API served in the same loop (``conveyor dev``), on a socket bound already."""

    def __init__(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock

    async def run(self) -> None:
        await self.server.serve(sockets=[self.sock])

    def stop(self, force: bool = False) -> None:
        self.server.should_exit = True
        self.server.force_exit = self.server.force_exit or force


async def serve(
    worker: Worker | None = None, scheduler: Scheduler | None = None, api: ApiPart | None = None
) -> None:
    """Run a worker and/or a scheduler (and the API) until SIGTERM/SIGINT: the first signal
    stops them gracefully, a second one stops the worker (and the API) at once."""
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        name = signal.Signals(signum).name
        if scheduler is not None:
            scheduler.stop()
        if api is not None:
            api.stop(force=signals > 1)
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
    parts = [asyncio.create_task(part.run()) for part in (worker, scheduler, api) if part is not None]
    # A worker on its own says so when no scheduler runs: its schedules would never fire.
    check = asyncio.create_task(_warn_without_scheduler(worker)) if worker and not scheduler else None
    try:
        done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_EXCEPTION)
        if any(task.exception() for task in done):
            # One part failed: stop the other rather than run on half-alive.
            if worker is not None:
                worker.stop(force=True)
            if scheduler is not None:
                scheduler.stop()
            if api is not None:
                api.stop(force=True)
        await asyncio.gather(*parts)
    finally:
        if check is not None:
            check.cancel()
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


async def _warn_without_scheduler(worker: Worker) -> None:
    """Once the worker has started: a warning if schedules exist and no scheduler ticks."""
    await worker.started.wait()
    try:
        status = await read_scheduler_status(worker.db, now=None)
    except Exception as exc:  # a warning that cannot be read is no reason to stop working
        log.debug("could not read the scheduler's status: %s", exc)
        return
    if (warning := status.warning()) is not None:
        log.warning(warning)


@click.command()
@click.option(
    "--tasks",
    "tasks_modules",
    envvar="CONVEYOR_TASKS",
    default="tasks",
    show_default=True,
    help="Task modules whose declared schedules to write on start.",
)
@click.option(
    "--lease", type=Duration(minimum=3), default="15s", show_default=True, help="The leader's lease."
)
@click.option(
    "--prune-schedules",
    is_flag=True,
    help="Remove schedules declared in code that these task modules no longer declare.",
)
@click.option(
    "--tick", type=Duration(minimum=0.1), default="1s", show_default=True, help="Time between rounds."
)
@click.option("--verbose", "-v", is_flag=True)
@click.pass_obj
@handle_errors
def scheduler(
    ctx: Context, tasks_modules: str, lease: timedelta, prune_schedules: bool, tick: timedelta, verbose: bool
) -> None:
    """Fire cron schedules and keep house, when elected (run as many as you like)."""
    setup_logging(ctx, verbose)
    load_tasks(tasks_modules, warn=True)
    url = ctx.database_url()
    require_schema(url, ctx.schema)
    config = SchedulerConfig(
        lease=lease.total_seconds(), tick=tick.total_seconds(), prune_declared=prune_schedules
    )
    event_loop.run(serve(scheduler=Scheduler(url, schema=ctx.schema, config=config)))


@click.command()
@_worker_options
@click.option("--api/--no-api", "serve_api", default=True, show_default=True, help="Serve the HTTP API too.")
@click.option("--api-host", default="127.0.0.1", show_default=True)
@click.option("--api-port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.pass_obj
@handle_errors
def dev(
    ctx: Context,
    queues: str | None,
    concurrency: int,
    tasks_modules: str,
    lease: timedelta,
    grace: timedelta,
    poll_interval: timedelta,
    verbose: bool,
    serve_api: bool,
    api_host: str,
    api_port: int,
) -> None:
    """Run Conveyor locally: the embedded PostgreSQL (unless DATABASE_URL is set), migrated, a
    worker, a scheduler and the HTTP API."""
    setup_logging(ctx, verbose)
    load_tasks(tasks_modules, required=True)  # before anything starts: its worker needs them
    sock = None
    if serve_api:
        from ..api.server import bind  # the API takes a while to import: only when served

        sock = bind(api_host, api_port)  # a port in use fails here, before anything starts
    if ctx.settings.database_url:
        url = ctx.settings.database_url
        click.echo(f"Conveyor dev: using DATABASE_URL, schema {ctx.schema!r}")
    else:
        pgdata = ctx.data_dir / "pgdata"
        embedded.check_installed()
        click.echo(f"Conveyor dev: starting the embedded PostgreSQL in {pgdata}/ ...")
        url = embedded.start(pgdata)
        click.echo(f"Conveyor dev: database {url}")
        click.echo(f"Conveyor dev: inspect it with: psql '{url}' (try the view {ctx.schema}.queue_stats)")
    from ..db import migrations  # Alembic and SQLAlchemy take a while to import

    migrations.upgrade(url, ctx.schema)
    config = _worker_config(queues, concurrency, lease, grace, poll_interval)
    event_loop.run(
        _dev(
            url,
            ctx.schema,
            Worker(url, schema=ctx.schema, config=config),
            Scheduler(url, schema=ctx.schema),
            sock,
        )
    )


async def _dev(
    url: str, schema: str, worker: Worker, scheduler: Scheduler, sock: socket.socket | None
) -> None:
    """Make this run's admin API key (the previous run's is revoked), say how to use it, and
    run the worker, the scheduler and the API. (The key is made on this loop: one loop per
    process.)"""
    info, token = await make_dev_key(url, schema)
    click.echo(
        f"Conveyor dev: API key {info.name!r} (admin, made for this run; the previous one is revoked):"
    )
    click.echo(f"Conveyor dev:   {token}")
    click.echo(f"Conveyor dev: send it as the header 'Authorization: Bearer {token}'")
    api = None
    if sock is not None:
        import uvicorn

        from ..api import create_app
        from ..api.server import EmbeddedServer, url_of

        app = create_app(database_url=url, schema=schema)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
        api = ApiPart(EmbeddedServer(config), sock)
        root = url_of(sock)
        click.echo(f"Conveyor dev: API at {root}/api/v1 (docs: {root}/api/v1/docs; dashboard: {root}/)")
    click.echo(
        f"Conveyor dev: {len(default_registry)} tasks and {len(default_registry.schedules())} schedules "
        f"loaded; worker, scheduler{' and API' if api else ''} running; Ctrl-C to stop"
    )
    await serve(worker, scheduler, api)
