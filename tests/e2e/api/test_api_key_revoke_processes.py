"""A revoked key stops working at once in every process of `conveyor api --workers 2`, though
each process remembers the keys it found valid (conveyor.ops.key_cache): revoked by `conveyor
keys revoke`, and by an UPDATE on a connection of the test's own, as psql would, with the next
requests sent the moment the revoke has committed."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import httpx
import pytest

from conveyor import Conveyor
from conveyor.ops.keys import create_key
from conveyor.ops.roles import LOCAL_ADMIN

from ...helpers import DB, subprocess_env, wait_until_sync
from .test_api_commands import children, conveyor, serving

pytestmark = pytest.mark.processes

PROCESSES = 2
REQUESTS = 12  # each on a connection of its own: the kernel spreads them over the processes
_hosts = itertools.count(1)


def statuses(url: str, token: str) -> list[int]:
    """Each request from an address of its own in 127/8, so that the failed-attempt limit (per
    client address) never answers in the key's place."""
    found = []
    for _ in range(REQUESTS):
        n = next(_hosts)
        address = f"127.0.{n // 250}.{n % 250 + 2}"
        transport = httpx.HTTPTransport(local_address=address)
        with httpx.Client(base_url=url, timeout=30, transport=transport) as http:
            found.append(http.get("/api/v1/queues", headers={"Authorization": f"Bearer {token}"}).status_code)
    return found


async def make_keys(database_url: str, schema: str, names: list[str]) -> list[str]:
    async with Conveyor(database_url, schema=schema) as client:
        return [(await create_key(client.db, LOCAL_ADMIN, name, "viewer"))[1] for name in names]


def test_a_revoke_holds_in_every_api_process_for_the_very_next_request(
    database_url: str, schema: str, db: DB, tmp_path: Path
) -> None:
    names = [f"reader{i}" for i in range(8)]
    tokens = asyncio.run(make_keys(database_url, schema, names))
    env = subprocess_env(database_url, schema, PYTHONUNBUFFERED="1")
    args = ["api", "--port", "0", "--workers", str(PROCESSES), "--no-access-log"]
    with conveyor(*args, env=env, folder=tmp_path) as api:
        url = api.url()
        wait_until_sync(lambda: len(children(api.popen.pid)) >= PROCESSES, within=60)

        wait_until_sync(lambda: serving(url), within=60)

        for i, (name, token) in enumerate(zip(names, tokens, strict=True)):
            assert statuses(url, token) == [200] * REQUESTS  # remembered by each process it reached
            if i == 0:
                with conveyor("keys", "revoke", name, env=env, folder=tmp_path) as revoke:
                    assert revoke.popen.wait(timeout=60) == 0, str(revoke)
            else:
                db.all("UPDATE {schema}.api_keys SET revoked_at = now() WHERE name = %s", [name])
            assert statuses(url, token) == [401] * REQUESTS, name
        assert api.stop() == 0, str(api)
