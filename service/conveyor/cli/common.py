"""What every command shares: the Context, user errors as one line, output helpers.

User mistakes (bad JSON, unknown task or queue, no database) print one line starting
``conveyor: error:`` and exit 1; usage errors exit 2. Tracebacks are for bugs only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from uuid import UUID

import click
import psycopg

from ..db import embedded
from ..durations import parse_duration
from ..errors import ConfigurationError, ConveyorError, TaskImportError
from ..logs import configure_logging
from ..queue.client import Conveyor, sql_error_message
from ..settings import Settings
from ..tasks import check_module_name, default_registry

T = TypeVar("T")
log = logging.getLogger("conveyor")

DEFAULT_DATA_DIR = ".conveyor"


class Context:
    def __init__(
        self, database_url: str | None, schema: str | None, data_dir: str, *, log_format: str = "text"
    ) -> None:
        self.settings = Settings.from_env(database_url, schema)
        self.data_dir = Path(data_dir)
        self.log_format = log_format

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


def fail(message: str) -> NoReturn:
    click.echo(f"conveyor: error: {message}", err=True)
    sys.exit(1)


def handle_errors(func: Callable[..., T]) -> Callable[..., T]:
    """Turn the errors a user can cause into one clear line and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except ConveyorError as exc:
            fail(str(exc))
        except Exception as exc:
            error = database_error(exc)
            if error is None:
                raise  # a bug: let its traceback show
            if isinstance(error, psycopg.OperationalError):
                text = str(error).strip()
                fail(f"cannot reach the database: {text.splitlines()[0] if text else type(error).__name__}")
            if isinstance(error, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedFunction):
                ctx = click.get_current_context().find_object(Context)
                if ctx is None or not _is_installed(ctx):
                    where = f"schema {ctx.schema!r}" if ctx else "this schema"
                    fail(f"Conveyor is not installed in {where}: run `conveyor migrate`")
            fail(sql_error_message(error))

    return wrapper


def _is_installed(ctx: Context) -> bool:
    """Whether the schema holds Conveyor (its Alembic revision): a missing table or function
    then means something else (e.g. a day another retention run dropped), and the
    database's own message says what."""
    from ..db import migrations  # Alembic and SQLAlchemy take a while to import

    try:
        return migrations.current(ctx.database_url(), ctx.schema) is not None
    except Exception:
        return True  # cannot tell: the database's own message is the safer one


def database_error(exc: BaseException) -> psycopg.Error | None:
    """The psycopg error behind an exception (SQLAlchemy wraps them for Alembic)."""
    if isinstance(exc, psycopg.Error):
        return exc
    original = getattr(exc, "orig", None)  # sqlalchemy.exc.DBAPIError
    return original if isinstance(original, psycopg.Error) else None


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def with_client(ctx: Context, action: Callable[[Conveyor], Coroutine[Any, Any, T]]) -> T:
    async with ctx.client() as client:
        return await action(client)


def load_tasks(modules: str | None, *, required: bool = False, warn: bool = False) -> None:
    """Import task modules; the default `tasks` may be absent, a named module may not.

    ``required`` (a worker): importing no task module at all is a refusal, since a worker
    without its tasks can run none of the jobs it claims. ``warn``: its absence is logged.
    (A producer needs none: it enqueues by name what workers recorded.)
    """
    source = click.get_current_context().get_parameter_source("tasks_modules")
    explicit = source is not click.core.ParameterSource.DEFAULT
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    names = [m.strip() for m in (modules or "").split(",") if m.strip()]
    for name in names:  # a name that is no module name is a usage error (exit 2)
        try:
            check_module_name(name)
        except TaskImportError as exc:
            raise click.BadParameter(str(exc), param_hint="'--tasks' / CONVEYOR_TASKS") from None
    if required and not names:
        raise ConfigurationError(
            "no task module named: pass your task modules with --tasks or CONVEYOR_TASKS (comma-separated)"
        )
    if not explicit and names == ["tasks"] and importlib.util.find_spec("tasks") is None:
        if required:
            raise ConfigurationError(
                f"no task module 'tasks' in {os.getcwd()}: start the worker in your project's folder, "
                "or name your task modules with --tasks or CONVEYOR_TASKS"
            )
        if warn:
            log.warning("no task module `tasks` here; pass --tasks or set CONVEYOR_TASKS")
        return
    default_registry.import_modules(names)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def cell(value: Any) -> str:
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


def echo_errors(errors: Sequence[dict[str, Any]]) -> None:
    """A job's errors, each attempt's with its traceback."""
    for error in errors:
        click.echo(f"\n-- attempt {error.get('attempt')} at {error.get('at')}: {error.get('error')}")
        if error.get("traceback"):
            click.echo(error["traceback"].rstrip())


def warn(message: str) -> None:
    """A warning for the user: one line on stderr; the command goes on."""
    click.echo(f"conveyor: warning: {message}", err=True)


def json_option(func: Callable[..., T]) -> Callable[..., T]:
    """``--json`` for a read command: print JSON (one document on stdout) instead of text."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(func)


def echo_json(value: Any) -> None:
    """Times as ISO 8601, durations as seconds, ids as strings, dataclasses as objects."""
    click.echo(json.dumps(value, default=_json_value, indent=2, ensure_ascii=False))


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID | Decimal):
        return str(value) if isinstance(value, UUID) else float(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def setup_logging(ctx: Context, verbose: bool) -> None:
    configure_logging(verbose, ctx.log_format)


if TYPE_CHECKING:  # click's ParamType is generic from 8.2 on, and cannot be subscripted before
    _DurationBase = click.ParamType[timedelta, Any]
else:
    _DurationBase = click.ParamType


class Duration(_DurationBase):
    """A duration option: ``45s``, ``30m``, ``12h``, ``7d`` (see ``conveyor.durations``); a
    bare number is in ``default_unit``, as the option always took it."""

    name = "duration"

    def __init__(self, default_unit: str | None = "s", *, minimum: float = 0.0) -> None:
        self.default_unit = default_unit
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            duration = parse_duration(str(value), default_unit=self.default_unit)
        except ConveyorError as exc:
            self.fail(str(exc), param, ctx)
        if duration.total_seconds() < self.minimum:
            self.fail(f"{value!r} is shorter than the least allowed, {self.minimum:g}s", param, ctx)
        return duration


if TYPE_CHECKING:
    _MomentBase = click.ParamType[datetime, Any]
else:
    _MomentBase = click.ParamType


class Moment(_MomentBase):
    """A time option: ISO 8601 with an offset (``2026-12-07T10:00:00+00:00``, or ``Z``), or a
    duration meaning that long ago by this machine's clock (``30m``, ``2h``, ``7d``)."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            try:
                return datetime.now(UTC) - parse_duration(text)
            except (ConveyorError, OverflowError):
                self.fail(
                    f"{value!r} is neither an ISO time with an offset (2026-12-07T10:00:00+00:00) "
                    "nor a duration ago (30m, 2h, 7d)",
                    param,
                    ctx,
                )
        if at.tzinfo is None:
            self.fail(f"{value!r} has no offset: add one, like +00:00 or Z", param, ctx)
        return at


def seconds(duration: timedelta | None) -> float | None:
    return None if duration is None else duration.total_seconds()


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConveyorError(
            f"--args is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:  # json reads nesting by recursion: a RecursionError is a refusal
        raise ConveyorError("--args is nested too deeply to read as JSON") from None
    if not isinstance(value, dict):
        raise ConveyorError(
            f'--args must be a JSON object like \'{{"to": "a@b.c"}}\', got {type(value).__name__}'
        )
    return value


# A job id as PostgreSQL stores it (bigint), and an attempt budget (integer): out of range
# is a usage error, not a database error.
JOB_ID = click.IntRange(min=1, max=2**63 - 1)
ATTEMPTS = click.IntRange(min=1, max=2**31 - 1)
