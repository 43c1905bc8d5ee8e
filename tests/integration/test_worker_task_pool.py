"""Slow task connections (view refreshes) must not starve the worker's own loops."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from psycopg import sql

from conveyor import Conveyor
from conveyor.queue.matviews import REFRESH_TASK

from ..helpers import DB, wait_until

VIEWS = 6  # the worker's pool holds 6 connections


async def test_refreshes_do_not_starve_the_workers_heartbeats(
    client: Conveyor, db: DB, start_worker: Any, schema: str
) -> None:
    """Each refresh holds a connection of the worker's own 6-connection pool (the one its
    claim, ack, heartbeat, maintenance and progress loops share) for the whole REFRESH.
    Six slow refreshes at the top of the hour (seeds: "hourly materialized-view refresh")
    leave the heartbeat no connection: the leases of the running jobs lapse while they run."""
    with db.connect(autocommit=True) as conn:
        for n in range(VIEWS):
            conn.execute(
                sql.SQL(
                    "create materialized view {}.{} as select 1 as id from pg_sleep(7) with no data"
                ).format(sql.Identifier(schema), sql.Identifier(f"slow_{n}"))
            )
    async with start_worker(concurrency=10, lease=3.0, queues=["default"]):
        for n in range(VIEWS):
            await client.enqueue(REFRESH_TASK, {"view": f"{schema}.slow_{n}"})
        await wait_until(
            lambda: db.one("select count(*) from {schema}.jobs where state = 'running'") == VIEWS, within=10
        )
        first = db.one("select max(lease_expires_at) from {schema}.jobs")
        # Every running refresh gets its lease pushed back by the heartbeat while it runs.
        await wait_until(
            lambda: (
                db.one("select min(lease_expires_at) from {schema}.jobs where state = 'running'")
                > first + timedelta(seconds=1)
            ),
            within=6,
        )
        await wait_until(lambda: db.one("select count(*) from {schema}.jobs") == 0, within=30)
    assert db.one("select count(*) from {schema}.job_history where attempt > 1") == 0  # none re-run
