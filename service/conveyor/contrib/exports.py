"""Exports: a query's rows streamed to a CSV or JSON Lines file, gzipped if asked.

The SQL of an export is declared in code, never taken from a job::

    from conveyor.contrib.exports import register_export

    register_export("orders", "SELECT id, placed_at, total FROM orders WHERE placed_at >= %(since)s")

then ``conveyor.exports.export`` (queue ``exports``) runs it::

    await conveyor.enqueue("conveyor.exports.export", {"export": "orders", "format": "csv",
                                                       "params": {"since": "2026-01-01"}})

A job may instead name a table or view (``relation="reports.daily"``) that the settings
allow (``CONVEYOR_EXPORTS_RELATIONS``). Rows go from ``COPY ... TO STDOUT`` to a hidden file
in chunks (at most about a MiB held at once, whatever the row count), which is renamed into
place when complete: a reader never sees half a file. The result names the file, its rows
and bytes, and where to download it (``GET /api/v1/exports/<file>``, any API key).
``conveyor.exports.delete_expired`` removes files past their retention (schedule it with
:func:`schedule_export_cleanup`). See docs/exports.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip as gzip_module
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Literal, LiteralString

import psycopg
from psycopg import sql

from ..db.queries import for_schema
from ..errors import Discard, InvalidOptionError
from ..queue.context import JobContext
from ..tasks import QUEUE_NAME, Registry, ScheduleSpec, build_task, default_registry
from . import export_files
from .export_files import PART_SUFFIX, ExportSettings, configure, current, current_settings
from .old_files import sweep

__all__ = [
    "CLEANUP_TASK",
    "EXPORT_TASK",
    "QUEUE",
    "ExportSettings",
    "configure",
    "current_settings",
    "register_export",
    "schedule_export_cleanup",
]

log = logging.getLogger("conveyor.contrib.exports")

EXPORT_TASK = "conveyor.exports.export"
CLEANUP_TASK = "conveyor.exports.delete_expired"
QUEUE = "exports"
FLUSH_BYTES = 1024 * 1024  # rows are written to the file in chunks of about this size
PROGRESS_EVERY = 1.0  # seconds between progress reports
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_RELATION = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}(?:\.[A-Za-z_][A-Za-z0-9_$]{0,62})?")
# Never exported by name, whatever the settings allow: the catalogs.
_SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema", "pg_toast"})


@dataclass(frozen=True)
class ExportSpec:
    """A named export: its SQL (a SELECT, from code) and its parameters with their defaults
    (a parameter without one is required)."""

    name: str
    query: LiteralString
    defaults: Mapping[str, Any] = field(default_factory=dict)
    required: frozenset[str] = frozenset()

    @property
    def params(self) -> frozenset[str]:
        return frozenset(self.defaults) | self.required


_exports: dict[str, ExportSpec] = {}


def register_export(
    name: str, query: LiteralString, *, params: Mapping[str, Any] | None = None
) -> ExportSpec:
    """Declare an export jobs can run by name.

    ``query``: one SELECT (or VALUES, or TABLE), without a trailing semicolon; parameters as
    ``%(name)s`` (psycopg's form; a literal ``%`` is then written ``%%``). Their values come
    from a job's ``params`` and are bound by psycopg as quoted literals (COPY takes no
    server-side parameters), never formatted into the text. ``params``: the parameters' default
    values; a parameter of the query without one is required. Registering the same name
    again with the same SQL changes nothing; with other SQL it is refused."""
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise InvalidOptionError(
            f"export name {name!r} is not allowed: use letters, digits and _ . : - (at most 127)"
        )
    text = query.strip().rstrip(";").strip()
    if not text:
        raise InvalidOptionError(f"export {name!r}: the query is empty")
    placeholders = set(_PLACEHOLDER.findall(text))
    if placeholders and "%" in _PLACEHOLDER.sub("", text).replace("%%", ""):  # psycopg would refuse it
        raise InvalidOptionError(
            f"export {name!r}: use named parameters, %(name)s, not %s (and write a literal % as %%)"
        )
    defaults = dict(params or {})
    unknown = sorted(set(defaults) - placeholders)
    if unknown:
        raise InvalidOptionError(f"export {name!r}: the query has no parameter {', '.join(unknown)}")
    spec = ExportSpec(name, text, defaults, frozenset(placeholders - set(defaults)))
    existing = _exports.get(name)
    if existing is not None and existing != spec:
        raise InvalidOptionError(f"export {name!r} is registered already, with other SQL or parameters")
    _exports[name] = spec
    return spec


def registered_exports() -> dict[str, ExportSpec]:
    """The exports declared in this process, by name."""
    return dict(_exports)


async def export(
    ctx: JobContext,
    export: str | None = None,
    relation: str | None = None,
    format: Literal["csv", "jsonl"] = "csv",
    gzip: bool = False,
    params: dict[str, Any] | None = None,
    filename: str | None = None,
) -> dict[str, Any]:
    """Write the rows of a registered export (``export``) or of a table or view
    (``relation``) to a file in the exports directory; see the module's docstring."""
    settings = current()
    if (export is None) == (relation is None):
        raise Discard("name either a registered export (export=...) or a table or view (relation=...)")
    if format not in export_files.FORMATS:
        raise Discard(f"format {format!r} is not one of csv, jsonl")
    started = datetime.now(UTC)
    queries = for_schema(ctx.schema)
    async with ctx.connection() as conn, conn.transaction():
        cur = psycopg.AsyncClientCursor(conn)
        timeout = str(round(settings.statement_timeout * 1000))
        await cur.execute(queries["export_settings"], {"statement_timeout": timeout})
        if export is not None:
            spec = _registered(export)
            inner: sql.Composable = sql.SQL(spec.query)
            bound = _bind(spec, params or {})
            base = export
        else:
            if params:
                raise Discard("params go with a registered export, not with relation=")
            schema, name = await _relation(cur, relation or "", settings, ctx.schema)
            inner = sql.SQL(queries.compose("export_relation_rows", relation=(schema, name)).decode())
            bound = None
            base = f"{schema}.{name}"
        final = export_files.file_name(
            format, gzip, requested=filename, base=base, job_id=ctx.job_id, at=started
        )
        estimate = await _estimate(cur, queries.compose_around("export_estimate", inner), bound)
        statement = queries.compose_around(f"export_{format}", inner)
        rows = await _stream(ctx, cur, statement, bound, settings, final, gzip, estimate, format)
    info = os.stat(settings.directory / final)
    ctx.progress(100, f"{rows} rows, {info.st_size} bytes")
    log.info(
        "export %s: %d rows, %d bytes in %s",
        base,
        rows,
        info.st_size,
        final,
        extra={"event": "export_written", "job_id": ctx.job_id, "rows": rows, "bytes": info.st_size},
    )
    return {
        "file": final,
        "rows": rows,
        "bytes": info.st_size,
        "format": format,
        "gzip": gzip,
        "download": f"/api/v1/exports/{final}",
        "expires_at": settings.expires_at(info.st_mtime).isoformat(),
    }


def _registered(name: str) -> ExportSpec:
    spec = _exports.get(name)
    if spec is None:
        known = ", ".join(sorted(_exports)) or "none"
        raise Discard(
            f"no export is registered as {name!r} in this worker (registered: {known}); "
            "register_export() it in a module the worker imports (--tasks)"
        )
    return spec


def _bind(spec: ExportSpec, given: Mapping[str, Any]) -> dict[str, Any] | None:
    unknown = sorted(set(given) - spec.params)
    if unknown:
        raise Discard(
            f"export {spec.name!r} takes no parameter {', '.join(map(repr, unknown))}"
            f" (it takes {', '.join(sorted(spec.params)) or 'none'})"
        )
    missing = sorted(spec.required - set(given))
    if missing:
        raise Discard(f"export {spec.name!r} needs the parameter {', '.join(map(repr, missing))}")
    bound = {**spec.defaults, **given}
    return bound or None


async def _relation(
    cur: psycopg.AsyncCursor[Any], relation: str, settings: ExportSettings, conveyor_schema: str
) -> tuple[str, str]:
    if not _RELATION.fullmatch(relation):
        raise Discard(f"relation {relation!r} is not a table or view name: use name or schema.name")
    await cur.execute(for_schema(conveyor_schema)["export_relation_info"], {"relation": relation})
    found = await cur.fetchone()
    if found is None:
        raise Discard(f"{relation!r} is not a table or view this worker's database user can see")
    schema, name = found
    if schema in _SYSTEM_SCHEMAS or schema == conveyor_schema or not settings.allows_relation(schema, name):
        raise Discard(
            f"{schema}.{name} may not be exported by name: list it (or schema.*) in "
            "CONVEYOR_EXPORTS_RELATIONS, or register_export() a query over it"
        )
    return schema, name


async def _estimate(cur: psycopg.AsyncCursor[Any], statement: bytes, params: dict[str, Any] | None) -> int:
    """The planner's row estimate, or 0 if it has none."""
    async with _failing_for_good():
        await cur.execute(statement, params)
    found = await cur.fetchone()
    try:
        return max(0, int(found[0][0]["Plan"]["Plan Rows"])) if found else 0
    except (KeyError, IndexError, TypeError, ValueError):  # pragma: no cover - EXPLAIN's shape
        return 0


async def _stream(
    ctx: JobContext,
    cur: psycopg.AsyncCursor[Any],
    statement: bytes,
    params: dict[str, Any] | None,
    settings: ExportSettings,
    final: str,
    gzip: bool,
    estimate: int,
    fmt: str,
) -> int:
    """COPY to a hidden file, then rename it to ``final``; the rows written."""
    directory = settings.directory
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    part = directory / f".{final}.{uuid.uuid4().hex[:12]}{PART_SUFFIX}"
    sink = await asyncio.to_thread(_open_sink, part, final, gzip)
    done = False
    try:
        chunks: list[bytes] = []
        held = read = lines = 0
        reported = time.monotonic()
        async with _failing_for_good(), cur.copy(statement, params) as copy:
            async for data in copy:  # one row (or the CSV header) at a time
                chunk = bytes(data)
                chunks.append(chunk)
                held += len(chunk)
                lines += 1
                if held >= FLUSH_BYTES:
                    await asyncio.to_thread(_write, sink, chunks)
                    read += held
                    chunks, held = [], 0
                    if time.monotonic() - reported >= PROGRESS_EVERY:
                        reported = time.monotonic()
                        rows = lines - (fmt == "csv")
                        _report(ctx, rows, read, estimate)
        await asyncio.to_thread(_write, sink, chunks)
        read += held
        await asyncio.to_thread(_finish, sink, part, directory / final)
        done = True
        return cur.rowcount
    finally:
        if not done:
            await asyncio.to_thread(_abandon, sink, part)


@contextlib.asynccontextmanager
async def _failing_for_good() -> AsyncIterator[None]:
    """Turn the failures no retry can mend into a Discard: a value psycopg cannot send (a
    JSON object as a parameter), an error in the query or its privileges (SQLSTATE class 42)
    and bad data (class 22: a parameter that is not a number, a division by zero). Anything
    else (a lost connection, a timeout, a lock) is retried."""
    try:
        yield
    except psycopg.Error as exc:
        state = exc.sqlstate
        if state is None and not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            raise Discard(f"the export's parameters cannot be sent: {exc}") from None
        if state is not None and state[:2] in ("42", "22"):
            raise Discard(f"the export's query failed: {str(exc).splitlines()[0]}") from None
        raise


def _report(ctx: JobContext, rows: int, read: int, estimate: int) -> None:
    if estimate > 0:
        percent = min(99, rows * 100 // estimate)
        ctx.progress(percent, f"{rows} of about {estimate} rows, {read} bytes read")
    else:
        ctx.progress(None, f"{rows} rows, {read} bytes read")


class _Sink:
    """The hidden file an export writes, and the gzip stream over it if any."""

    def __init__(self, raw: IO[bytes], compressed: gzip_module.GzipFile | None) -> None:
        self.raw = raw
        self.compressed = compressed

    @property
    def out(self) -> gzip_module.GzipFile | IO[bytes]:
        return self.compressed if self.compressed is not None else self.raw


def _open_sink(part: os.PathLike[str], final: str, gzip: bool) -> _Sink:
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    raw = os.fdopen(fd, "wb", buffering=FLUSH_BYTES)
    compressed = None
    if gzip:
        inner = final.removesuffix(".gz")
        compressed = gzip_module.GzipFile(filename=inner, mode="wb", fileobj=raw, compresslevel=6)
    return _Sink(raw, compressed)


def _write(sink: _Sink, chunks: list[bytes]) -> None:
    out = sink.out
    for chunk in chunks:
        out.write(chunk)


def _finish(sink: _Sink, part: os.PathLike[str], final: os.PathLike[str]) -> None:
    if sink.compressed is not None:
        sink.compressed.close()
    sink.raw.flush()
    os.fsync(sink.raw.fileno())
    sink.raw.close()
    os.replace(part, final)  # atomic: the file appears complete, or not at all


def _abandon(sink: _Sink, part: os.PathLike[str]) -> None:
    with contextlib.suppress(Exception):
        if sink.compressed is not None:
            sink.compressed.close()
    with contextlib.suppress(Exception):
        sink.raw.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(part)


async def delete_expired(ctx: JobContext) -> dict[str, Any]:
    """Delete the export files past their retention (and files an export left half-written
    that long ago). Safe to run twice, or on two workers at once."""
    settings = current()
    # The directory is the settings' (trusted): a link to it is followed here, as the export
    # and the download follow it; nothing inside it is (``sweep``).
    directory = await asyncio.to_thread(settings.directory.resolve)
    if not directory.is_dir():
        return {"deleted": 0, "bytes": 0}
    cutoff = time.time() - settings.retention.total_seconds()

    def expired(name: str) -> bool:
        return export_files.is_export_name(name) or (name.startswith(".") and name.endswith(PART_SUFFIX))

    done = await asyncio.to_thread(sweep, directory, cutoff, matches=expired)
    if done.files:
        ctx.progress(100, f"{done.files} expired export files deleted")
    return {"deleted": done.files, "bytes": done.bytes}


default_registry.add(build_task(export, name=EXPORT_TASK, queue=QUEUE, max_attempts=3))
default_registry.add(build_task(delete_expired, name=CLEANUP_TASK, queue=QUEUE, max_attempts=3))


def schedule_export_cleanup(
    cron: str = "0 * * * *",
    *,
    timezone: str = "UTC",
    name: str = "exports:delete-expired",
    queue: str | None = None,
    registry: Registry | None = None,
) -> ScheduleSpec:
    """Declare a schedule that deletes expired export files (hourly by default). It runs on
    a worker serving the ``exports`` queue, which must see the exports directory."""
    target = registry if registry is not None else default_registry
    return target.schedule(name, cron, CLEANUP_TASK, {}, timezone=timezone, queue=queue)
