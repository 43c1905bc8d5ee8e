"""The raw-SQL baseline: the simplest queue psycopg allows, to show what PostgreSQL itself does
on this machine. One table; enqueue is an INSERT (with a NOTIFY, as every queue here sends);
bulk is COPY; a worker claims 500 rows per statement with FOR UPDATE SKIP LOCKED, runs them,
and deletes the batch. No leases, retries, history or results."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bench.common import Adapter, Recorder, main

BATCH = 500


class Raw(Adapter):
    name = "raw SQL"
    concurrency = BATCH

    async def setup(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute(
                "CREATE TABLE raw_jobs (id bigserial PRIMARY KEY, run_at timestamptz NOT NULL DEFAULT now(),"
                " state text NOT NULL DEFAULT 'available', payload jsonb NOT NULL)"
            )
            await conn.execute(
                "CREATE INDEX raw_jobs_ready ON raw_jobs (run_at, id) WHERE state = 'available'"
            )

    async def open(self) -> None:
        self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)

    async def close(self) -> None:
        await self.conn.close()

    async def enqueue_one(self, payload: dict[str, Any]) -> None:
        await self.conn.execute(
            "WITH j AS (INSERT INTO raw_jobs (payload) VALUES (%s) RETURNING id)"
            " SELECT pg_notify('raw_jobs', '') FROM j",
            [json.dumps(payload)],
        )

    enqueue_variants = ("notify", "no notify")

    async def enqueue_variant(self, variant: str, payload: dict[str, Any]) -> None:
        if variant == "notify":
            await self.enqueue_one(payload)
        else:
            await self.conn.execute("INSERT INTO raw_jobs (payload) VALUES (%s)", [json.dumps(payload)])

    async def enqueue_many(self, payloads: Sequence[dict[str, Any]], *, delay: float = 0.0) -> None:
        async with self.conn.transaction():
            row = await (await self.conn.execute("SELECT now() + %s", [timedelta(seconds=delay)])).fetchone()
            run_at = row[0] if row else None
            async with self.conn.cursor().copy("COPY raw_jobs (run_at, payload) FROM STDIN") as copy:
                for payload in payloads:
                    await copy.write_row((run_at, json.dumps(payload)))
            await self.conn.execute("SELECT pg_notify('raw_jobs', '')")

    async def run_worker(self, concurrency: int, record: Recorder) -> None:
        listener = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        await listener.execute("LISTEN raw_jobs")
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            while True:
                rows = await (
                    await conn.execute(
                        "WITH c AS (SELECT id FROM raw_jobs WHERE state = 'available' AND run_at <= now()"
                        " ORDER BY run_at, id LIMIT %s FOR UPDATE SKIP LOCKED)"
                        " UPDATE raw_jobs j SET state = 'running' FROM c WHERE j.id = c.id RETURNING j.id, j.payload",
                        [concurrency],
                    )
                ).fetchall()
                if rows:
                    for _, payload in rows:
                        record(payload)  # the "job": nothing else
                    await conn.execute("DELETE FROM raw_jobs WHERE id = ANY(%s)", [[row[0] for row in rows]])
                    continue
                async for _ in listener.notifies(timeout=1.0, stop_after=1):
                    pass

    async def sizes(self) -> dict[str, int]:
        row = await (await self.conn.execute("SELECT pg_total_relation_size('raw_jobs')")).fetchone()
        return {"raw_jobs": int(row[0]) if row else 0}


if __name__ == "__main__":
    main(Raw, __file__)
