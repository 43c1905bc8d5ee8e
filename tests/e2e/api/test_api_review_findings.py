"""Findings of an adversarial review of the HTTP API, each shown through HTTP on a real
server and database (uvicorn, PostgreSQL, ``conveyor worker`` processes)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from ...helpers import DB, wait_until
from .support import Keys, bearer

pytestmark = pytest.mark.processes


async def _blocked_on_locks(db: DB, count: int) -> None:
    """Until ``count`` sessions wait on a lock."""

    def waiting() -> bool:
        n = db.one("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return bool(n >= count)

    await wait_until(waiting, within=20)


@pytest.mark.timeout(60)
async def test_bulk_enqueues_sharing_unique_keys_in_other_orders_both_succeed(
    http: httpx.AsyncClient, db: DB
) -> None:
    """Two bulk enqueues naming the same unique keys in different orders must both answer
    201 with the same ids for the same keys: it is no fault of theirs, and certainly not
    "the database cannot be reached". (Rows went in in the order given, so each held a key
    the other wanted next: PostgreSQL's deadlock detector aborted one.)"""
    # A transaction of someone else's holds a unique key the first request needs, so that
    # the two requests meet mid-way deterministically.
    with db.connect() as other:
        other.execute(
            db.compose(
                "INSERT INTO {schema}.jobs (queue, task, args, unique_key, max_attempts) VALUES ('api', 'api_echo', '{{}}', 'm', 1)"
            )
        )
        first = asyncio.ensure_future(
            http.post(
                "/api/v1/jobs/bulk",
                json={"jobs": [{"task": "api_echo", "unique_key": k} for k in ("a", "m", "b")]},
            )
        )
        await _blocked_on_locks(db, 1)  # the first holds a, waits for m
        second = asyncio.ensure_future(
            http.post(
                "/api/v1/jobs/bulk",
                json={"jobs": [{"task": "api_echo", "unique_key": k} for k in ("b", "a")]},
            )
        )
        await _blocked_on_locks(db, 2)  # the second holds b, waits for a
        other.rollback()
    one, two = await asyncio.gather(first, second)
    assert (one.status_code, two.status_code) == (201, 201), (one.text, two.text)
    ids = db.all("SELECT unique_key, id FROM {schema}.jobs WHERE unique_key IS NOT NULL")
    by_key = dict(ids)
    assert sorted(by_key) == ["a", "b", "m"]
    assert one.json()["ids"] == [by_key["a"], by_key["m"], by_key["b"]]
    assert two.json()["ids"] == [by_key["b"], by_key["a"]]


@pytest.mark.timeout(60)
async def test_concurrent_wrong_keys_cannot_pass_the_failed_attempt_limit(api_url: str, keys: Keys) -> None:
    """A client may fail 10 times a minute: sending its guesses all at once must not buy it
    more. (Each request was let through the limit before the key was looked up in the
    database, and counted only after: 50 guesses sent together were all looked at.)"""
    prefix = keys.admin.split("_")[1]
    guesses = [f"cvk_{prefix}_{str(i).rjust(43, 'A')}" for i in range(50)]
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        responses = await asyncio.gather(
            *[client.get("/api/v1/queues", headers=bearer(guess)) for guess in guesses]
        )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {401, 429}, statuses
    assert statuses.count(401) <= 10, statuses
