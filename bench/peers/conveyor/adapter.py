"""Conveyor, as its users run it: enqueue through the client, bulk through enqueue_many (COPY),
a `Worker` per process on the event loop `conveyor worker` uses (uvloop). Leases with fencing,
retries, history and LISTEN/NOTIFY all on.

CONVEYOR_BENCH_LIMITS (bench/limits.py) measures queue limits: ``neighbours``, the bench queue
unlimited while five rate-limited queues with waiting jobs exist and the worker serves them
too; ``rate``, the bench queue limited to 100,000 starts per second (above its natural rate);
``keys``, the bench queue's jobs spread over 100 keys with at most 5 running per key."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bench.common import Adapter, Recorder, main

from conveyor import Conveyor, JobRequest, Registry, Worker, WorkerConfig, event_loop
from conveyor.db import migrations

registry = Registry()
_record: Recorder | None = None
LIMITS = os.environ.get("CONVEYOR_BENCH_LIMITS", "")
NEIGHBOURS = [f"limited-{n}" for n in range(5)] if LIMITS == "neighbours" else []
KEYS = 100


@registry.task(queue="bench")
async def noop(i: int, t: float) -> None:
    if _record is not None:
        _record({"i": i, "t": t})


@registry.task(queue="limited-0")
async def idle() -> None:
    """The neighbours' jobs: never recorded."""


class ConveyorAdapter(Adapter):
    name = "conveyor"
    concurrency = 500

    async def setup(self) -> None:
        migrations.upgrade(self.url, "conveyor")
        if not LIMITS:
            return
        async with Conveyor(self.url, registry=registry) as client:
            if LIMITS == "rate":
                await client.set_queue_limits("bench", rate=(100_000, "1s"))
            elif LIMITS == "keys":
                await client.set_queue_limits("bench", key_concurrency=5)
            for queue in NEIGHBOURS:
                await client.set_queue_limits(queue, rate=(1, "1h"))
                await client.enqueue_many([JobRequest(idle, queue=queue) for _ in range(100)])

    async def open(self) -> None:
        self.client = await Conveyor(self.url, registry=registry).open()

    async def close(self) -> None:
        await self.client.close()

    async def enqueue_one(self, payload: dict[str, Any]) -> None:
        await self.client.enqueue(noop, payload)

    # "one client": every producer of the process shares one client (its pool as large as
    # the producers), as the request handlers of one web app process do.
    enqueue_variants = ("default", "durable=False", "one client")
    shared: asyncio.Task[Conveyor] | None = None  # opened once, by the first producer

    async def enqueue_variant(self, variant: str, payload: dict[str, Any]) -> None:
        if variant == "one client":
            if ConveyorAdapter.shared is None:
                client = Conveyor(self.url, registry=registry, pool_size=40)
                ConveyorAdapter.shared = asyncio.create_task(client.open())
            await (await ConveyorAdapter.shared).enqueue(noop, payload)
            return
        await self.client.enqueue(noop, payload, durable=variant != "durable=False")

    async def enqueue_many(self, payloads: Sequence[dict[str, Any]], *, delay: float = 0.0) -> None:
        if LIMITS == "keys":
            await self.client.enqueue_many(
                [JobRequest(noop, p, delay=delay or None, key=f"k{p['i'] % KEYS}") for p in payloads]
            )
            return
        await self.client.enqueue_many([JobRequest(noop, p, delay=delay or None) for p in payloads])

    async def run_worker(self, concurrency: int, record: Recorder) -> None:
        global _record
        _record = record
        await Worker(
            self.url,
            registry=registry,
            config=WorkerConfig(queues=["bench", *NEIGHBOURS], concurrency=concurrency),
        ).run()

    def run_forever(self, coro: Any) -> None:
        event_loop.run(coro)  # as `conveyor worker` runs: on uvloop when installed

    async def sizes(self) -> dict[str, int]:
        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            rows = await (
                await conn.execute(
                    "SELECT coalesce(p.relname, c.relname), sum(pg_total_relation_size(c.oid))::bigint"
                    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent"
                    " WHERE n.nspname = 'conveyor' AND c.relkind = 'r' GROUP BY 1"
                )
            ).fetchall()
        return {name: int(size) for name, size in rows if size}


if __name__ == "__main__":
    main(ConveyorAdapter, __file__)
