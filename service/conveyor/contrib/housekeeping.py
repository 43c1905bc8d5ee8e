"""Housekeeping: old rows of an application's table, and old files of a directory, deleted
on a schedule.

- ``conveyor.housekeeping.delete_old_rows`` (``table``, ``column``, ``older_than``,
  ``batch_size``): deletes the rows whose ``column`` (a date or timestamp) is older than
  ``older_than`` (``90d``), in batches of about ``batch_size`` rows, each batch its own
  transaction. The cut-off is taken once, at the start, from the database's clock.
- ``conveyor.housekeeping.delete_old_files`` (``directory``, ``older_than``, ``pattern``,
  ``recursive``): deletes the regular files last written before the cut-off, never a
  directory, never following or deleting a symbolic link (``contrib.old_files``).

Both are safe to run twice, and at once: a row or file already gone is not an error. What
they may touch is set where the worker runs, never by a job: the tables in
``CONVEYOR_HOUSEKEEPING_TABLES`` (``schema.name`` patterns, comma-separated) and the
directories inside ``CONVEYOR_HOUSEKEEPING_DIRS`` (``:``-separated roots). Anything else is
refused (the job goes to the dead-letter table, saying why). See docs/housekeeping.md.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from ..db.queries import for_schema
from ..durations import parse_duration
from ..errors import ConfigurationError, Discard, InvalidOptionError
from ..queue.context import JobContext
from ..tasks import Registry, ScheduleSpec, build_task, default_registry
from .old_files import Deleted, pattern_matcher, sweep
from .process_settings import ProcessSettings

__all__ = [
    "DELETE_FILES_TASK",
    "DELETE_ROWS_TASK",
    "QUEUE",
    "HousekeepingSettings",
    "configure",
    "current_settings",
    "schedule_delete_old_files",
    "schedule_delete_old_rows",
]

DELETE_ROWS_TASK = "conveyor.housekeeping.delete_old_rows"
DELETE_FILES_TASK = "conveyor.housekeeping.delete_old_files"
QUEUE = "housekeeping"
MAX_BATCH = 1_000_000
DEFAULT_BATCH_TIMEOUT = 60.0  # seconds: one batch's statement timeout
PROGRESS_EVERY = 1.0  # seconds between progress reports
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
_TABLE = re.compile(rf"{_IDENTIFIER}(?:\.{_IDENTIFIER})?")
_COLUMN = re.compile(_IDENTIFIER)
_TIME_TYPES = frozenset({"date", "timestamp", "timestamptz"})
_SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema", "pg_toast"})


@dataclass(frozen=True)
class HousekeepingSettings:
    """What the housekeeping tasks may touch.

    - ``tables``: ``schema.name`` patterns (``*`` matches any part: ``logs.*``) of the tables
      ``delete_old_rows`` may delete from. Empty: none. Conveyor's own schema never (its
      retention does that).
    - ``directories``: the roots ``delete_old_files`` may work inside (a directory given to it
      must be one of them or below one, after resolving links). Empty: none.
    - ``batch_timeout``: the statement timeout of one batch of ``delete_old_rows``, seconds.
    """

    tables: tuple[str, ...] = ()
    directories: tuple[Path, ...] = ()
    batch_timeout: float = DEFAULT_BATCH_TIMEOUT

    def __post_init__(self) -> None:
        object.__setattr__(self, "directories", tuple(Path(d) for d in self.directories))
        object.__setattr__(self, "tables", tuple(self.tables))
        if not self.batch_timeout >= 0:
            raise ConfigurationError("the housekeeping batch timeout must not be negative")

    @classmethod
    def from_env(cls) -> HousekeepingSettings:
        """CONVEYOR_HOUSEKEEPING_TABLES (comma-separated patterns), CONVEYOR_HOUSEKEEPING_DIRS
        (``:``-separated directories) and CONVEYOR_HOUSEKEEPING_BATCH_TIMEOUT (a duration; a
        bare number is seconds)."""
        env = os.environ
        timeout = DEFAULT_BATCH_TIMEOUT
        raw = env.get("CONVEYOR_HOUSEKEEPING_BATCH_TIMEOUT")
        if raw and raw.strip():
            try:
                timeout = parse_duration(raw, default_unit="s").total_seconds()
            except InvalidOptionError as exc:
                raise ConfigurationError(f"CONVEYOR_HOUSEKEEPING_BATCH_TIMEOUT: {exc}") from None
        return cls(
            tables=tuple(
                p.strip() for p in (env.get("CONVEYOR_HOUSEKEEPING_TABLES") or "").split(",") if p.strip()
            ),
            directories=tuple(
                Path(p) for p in (env.get("CONVEYOR_HOUSEKEEPING_DIRS") or "").split(os.pathsep) if p.strip()
            ),
            batch_timeout=timeout,
        )

    def allows_table(self, schema: str, name: str) -> bool:
        return any(fnmatch.fnmatchcase(f"{schema}.{name}", pattern) for pattern in self.tables)

    def root_of(self, directory: Path) -> Path | None:
        """The allowed root ``directory`` (resolved) is in, or None."""
        for root in self.directories:
            resolved = root.resolve()
            if directory == resolved or resolved in directory.parents:
                return resolved
        return None


_settings = ProcessSettings(HousekeepingSettings, HousekeepingSettings.from_env)
configure = _settings.configure
current = _settings.current


def parse_age(older_than: str) -> timedelta:
    """``older_than`` (``90d``) as a timedelta; InvalidOptionError unless it is positive."""
    if not isinstance(older_than, str):
        raise InvalidOptionError(f"older_than must be a duration such as 90d, got {older_than!r}")
    age = parse_duration(older_than)
    if age <= timedelta(0):
        raise InvalidOptionError(f"older_than must be more than nothing, got {older_than!r}")
    return age


def _age(older_than: str) -> timedelta:
    try:
        return parse_age(older_than)
    except InvalidOptionError as exc:
        raise Discard(f"older_than: {exc}") from None


def _allowed_directory(settings: HousekeepingSettings, directory: str) -> Path | None:
    """``directory`` resolved (links followed) if it lies in an allowed root; None if it does
    not exist; Discard if it lies elsewhere."""
    resolved = Path(directory).resolve()
    if settings.root_of(resolved) is None:
        roots = ":".join(str(d) for d in settings.directories) or "none are set"
        raise Discard(
            f"{directory!r} is outside the directories housekeeping may clean "
            f"(CONVEYOR_HOUSEKEEPING_DIRS: {roots})"
        )
    return resolved if resolved.is_dir() else None


def _schedule_name(prefix: str, what: str) -> str:
    return (prefix + re.sub(r"[^A-Za-z0-9_.:-]+", "_", what).strip("_"))[:127]


async def delete_old_rows(
    ctx: JobContext, table: str, column: str, older_than: str, batch_size: int = 10_000
) -> dict[str, Any]:
    """Delete the rows of ``table`` whose ``column`` is older than ``older_than``, in batches."""
    settings = current()
    age = _age(older_than)
    if not 1 <= batch_size <= MAX_BATCH:
        raise Discard(f"batch_size must be from 1 to {MAX_BATCH}, got {batch_size}")
    if not _TABLE.fullmatch(table):
        raise Discard(f"table {table!r} is not a table name: use name or schema.name")
    if not _COLUMN.fullmatch(column):
        raise Discard(f"column {column!r} is not a column name")
    queries = for_schema(ctx.schema)
    deleted = batches = 0
    async with ctx.connection() as conn:
        cur = conn.cursor()
        await cur.execute(queries["housekeeping_table_info"], {"table": table})
        found = await cur.fetchone()
        if found is None:
            raise Discard(f"{table!r} is not a table this worker's database user can see")
        schema, name = found
        if schema in _SYSTEM_SCHEMAS or schema == ctx.schema or not settings.allows_table(schema, name):
            raise Discard(
                f"{schema}.{name} is not a table housekeeping may delete from: list it (or {schema}.*) "
                "in CONVEYOR_HOUSEKEEPING_TABLES"
            )
        await cur.execute(
            queries["housekeeping_column_type"], {"schema": schema, "table": name, "column": column}
        )
        typed = await cur.fetchone()
        if typed is None:
            raise Discard(f"{schema}.{name} has no column {column!r}")
        if typed[1] not in _TIME_TYPES:
            raise Discard(f"column {column!r} of {schema}.{name} is {typed[0]}, not a date or timestamp")
        try:
            await cur.execute(queries["housekeeping_cutoff"], {"older_than": age})
        except psycopg.errors.DatetimeFieldOverflow:  # no retry makes such a time exist
            raise Discard(
                f"older_than: {older_than!r} reaches before the earliest time the database knows"
            ) from None
        row = await cur.fetchone()
        assert row is not None
        cutoff = row[0]
        statement = queries.compose("housekeeping_delete_batch", table=(schema, name), column=(column,))
        timeout = str(round(settings.batch_timeout * 1000))
        reported = time.monotonic()
        while True:
            async with conn.transaction():
                await cur.execute(queries["housekeeping_batch_timeout"], {"statement_timeout": timeout})
                await cur.execute(statement, {"cutoff": cutoff, "batch": batch_size})
                count = max(cur.rowcount, 0)
            batches += 1
            deleted += count
            if time.monotonic() - reported >= PROGRESS_EVERY:
                reported = time.monotonic()
                ctx.progress(None, f"{deleted} rows deleted in {batches} batches")
            if count < batch_size:
                break
    ctx.progress(100, f"{deleted} rows deleted in {batches} batches")
    return {"deleted": deleted, "batches": batches, "cutoff": cutoff.isoformat()}


async def delete_old_files(
    ctx: JobContext, directory: str, older_than: str, pattern: str = "*", recursive: bool = False
) -> dict[str, Any]:
    """Delete the files in ``directory`` last written more than ``older_than`` ago."""
    settings = current()
    age = _age(older_than)
    if "\x00" in directory or "\x00" in pattern:
        raise Discard("directory and pattern must not hold NUL")
    resolved = await asyncio.to_thread(_allowed_directory, settings, directory)
    if resolved is None:
        return {"deleted": 0, "bytes": 0, "directory": directory}
    cutoff = time.time() - age.total_seconds()
    reported = time.monotonic()

    def on_file(done: Deleted) -> None:
        nonlocal reported
        if time.monotonic() - reported >= PROGRESS_EVERY:
            reported = time.monotonic()
            ctx.progress(None, f"{done.files} files deleted ({done.bytes} bytes)")

    done = await asyncio.to_thread(
        sweep, resolved, cutoff, matches=pattern_matcher(pattern), recursive=recursive, on_file=on_file
    )
    ctx.progress(100, f"{done.files} files deleted ({done.bytes} bytes)")
    return {"deleted": done.files, "bytes": done.bytes, "directory": str(resolved)}


default_registry.add(build_task(delete_old_rows, name=DELETE_ROWS_TASK, queue=QUEUE, max_attempts=3))
default_registry.add(build_task(delete_old_files, name=DELETE_FILES_TASK, queue=QUEUE, max_attempts=3))


def schedule_delete_old_rows(
    table: str,
    column: str,
    older_than: str,
    cron: str,
    *,
    batch_size: int = 10_000,
    timezone: str = "UTC",
    name: str | None = None,
    queue: str | None = None,
    registry: Registry | None = None,
) -> ScheduleSpec:
    """Declare a schedule deleting ``table``'s rows older than ``older_than`` at each fire."""
    parse_age(older_than)
    target = registry if registry is not None else default_registry
    args = {"table": table, "column": column, "older_than": older_than, "batch_size": batch_size}
    return target.schedule(
        name or _schedule_name("delete-old-rows:", table),
        cron,
        DELETE_ROWS_TASK,
        args,
        timezone=timezone,
        queue=queue,
    )


def schedule_delete_old_files(
    directory: str,
    older_than: str,
    cron: str,
    *,
    pattern: str = "*",
    recursive: bool = False,
    timezone: str = "UTC",
    name: str | None = None,
    queue: str | None = None,
    registry: Registry | None = None,
) -> ScheduleSpec:
    """Declare a schedule deleting the files of ``directory`` older than ``older_than``."""
    parse_age(older_than)
    target = registry if registry is not None else default_registry
    args = {"directory": directory, "older_than": older_than, "pattern": pattern, "recursive": recursive}
    return target.schedule(
        name or _schedule_name("delete-old-files:", directory),
        cron,
        DELETE_FILES_TASK,
        args,
        timezone=timezone,
        queue=queue,
    )


current_settings = current  # the name conveyor.contrib.email uses
