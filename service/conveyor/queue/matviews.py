"""Refreshing materialized views: a built-in task every worker knows.

``conveyor.refresh_materialized_view`` refreshes one view: ``CONCURRENTLY`` (readers are not
blocked) when the view has a unique index on plain columns and already holds data, a plain
``REFRESH`` otherwise. Two refreshes of one view never run at once: a refresh that finds
another under way (on any worker) returns at once, saying so in its result. The result
records how long the refresh took and how many rows the view holds. The refresh, its lock
and the count are one transaction, so a failure or a cancellation leaves nothing held.

Schedule it like any task, or with :func:`schedule_refresh`::

    schedule_refresh("analytics.daily_sales", "0 * * * *")
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from ..db.queries import for_schema
from ..errors import Discard
from ..tasks import Registry, ScheduleSpec, build_task, default_registry, register_builtin
from .context import JobContext

REFRESH_TASK = "conveyor.refresh_materialized_view"


async def refresh_materialized_view(view: str, ctx: JobContext) -> dict[str, Any]:
    queries = for_schema(ctx.schema)
    async with ctx.connection() as conn, conn.transaction(), conn.cursor() as cur:
        try:
            await cur.execute(queries["matview_info"], {"view": view})
            info = await cur.fetchone()
        except (psycopg.errors.SyntaxError, psycopg.errors.InvalidName):
            # to_regclass() refuses names it cannot parse rather than returning NULL.
            raise Discard(f"{view!r} is not a materialized view") from None
        if info is None:
            raise Discard(f"{view!r} is not a materialized view")
        oid, schema, name, populated, has_unique_index = info
        # The lock lives as long as this transaction: REFRESH runs inside it.
        await cur.execute(queries["matview_try_lock"], {"oid": oid})
        locked = await cur.fetchone()
        if not (locked and locked[0]):
            return {"view": f"{schema}.{name}", "skipped": "another refresh of this view is running"}
        concurrently = bool(populated and has_unique_index)
        started = time.perf_counter()
        statement = "refresh_matview_concurrently" if concurrently else "refresh_matview"
        await cur.execute(queries.compose(statement, view=(schema, name)))
        duration = time.perf_counter() - started
        await cur.execute(queries.compose("matview_rows", view=(schema, name)))
        counted = await cur.fetchone()
    return {
        "view": f"{schema}.{name}",
        "concurrently": concurrently,
        "duration_ms": round(duration * 1000, 3),
        "rows": counted[0] if counted else None,
    }


register_builtin(build_task(refresh_materialized_view, name=REFRESH_TASK))


def schedule_refresh(
    view: str,
    cron: str,
    *,
    timezone: str = "UTC",
    name: str | None = None,
    queue: str | None = None,
    registry: Registry | None = None,
) -> ScheduleSpec:
    """Declare a schedule that refreshes ``view`` (``schema.name``) at every fire of ``cron``."""
    target = registry if registry is not None else default_registry
    return target.schedule(
        name or f"refresh:{view}", cron, REFRESH_TASK, {"view": view}, timezone=timezone, queue=queue
    )
