"""The API's memory of valid keys (conveyor.ops.key_cache) against a real PostgreSQL: what it
remembers, for how long, and every way a change to a key makes it forget (invariants C1-C5).

A hit is told from a read by revoking with the trigger switched off (a change nobody
announces): only a remembered key still passes. The cache's clock is the test's own and only
moves when a test moves it, so "at once" below means a notification, never the timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg import sql

from conveyor import Conveyor
from conveyor.errors import AuthenticationError
from conveyor.ops import keys
from conveyor.ops.key_cache import KeyCache, keys_channel
from conveyor.ops.keys import create_key
from conveyor.ops.roles import LOCAL_ADMIN, Role

from ..helpers import DB, PgBouncer, pgbouncer, wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def cache(clock: Clock) -> AsyncIterator[KeyCache]:
    keys = KeyCache(clock=clock)
    try:
        yield keys
    finally:
        await keys.close()


async def new_key(client: Conveyor, name: str, role: str = "operator") -> str:
    return (await create_key(client.db, LOCAL_ADMIN, name, role))[1]


def bearer(token: str) -> str:
    return f"Bearer {token}"


def silently(db: DB, statement: str, *params: object) -> None:
    """Change api_keys with the change trigger off (in one transaction): nobody is told."""
    with db.connect() as conn:
        conn.execute(db.compose("ALTER TABLE {schema}.api_keys DISABLE TRIGGER api_keys_changed"))
        conn.execute(db.compose(statement), params)
        conn.execute(db.compose("ALTER TABLE {schema}.api_keys ENABLE TRIGGER api_keys_changed"))


async def listening(cache: KeyCache, client: Conveyor, token: str) -> None:
    """Authenticate until the cache trusts its LISTEN: it is up (the first call starts it) and
    has delivered (the first miss on it sends a probe; C7)."""
    await cache.authenticate(client, bearer(token))
    await wait_until(lambda: cache._notifier is not None and cache._notifier.listening.is_set())
    await cache.authenticate(client, bearer(token))
    await wait_until(lambda: cache._notifier is not None and cache._delivered == cache._notifier.connects)
    cache.forget()  # each test starts with nothing remembered


async def refused(cache: KeyCache, client: Conveyor, token: str) -> str:
    with pytest.raises(AuthenticationError) as caught:
        await cache.authenticate(client, bearer(token))
    return caught.value.reason


async def test_a_valid_key_is_remembered_for_its_second_and_read_again_after(
    client: Conveyor, cache: KeyCache, clock: Clock, db: DB
) -> None:
    token = await new_key(client, "bot")
    await listening(cache, client, token)
    principal = await cache.authenticate(client, bearer(token))  # read after LISTEN: remembered
    assert (principal.role, principal.name) == (Role.OPERATOR, "bot")

    silently(db, "UPDATE {schema}.api_keys SET revoked_at = now() WHERE name = 'bot'")
    clock.now += 0.99
    assert (await cache.authenticate(client, bearer(token))).name == "bot"  # a hit: no read
    clock.now += 0.01
    assert await refused(cache, client, token) == "revoked"  # the second is over: read again


async def test_a_revoke_is_heard_at_once_from_any_connection(
    client: Conveyor, cache: KeyCache, db: DB
) -> None:
    tokens = [await new_key(client, f"bot{i}") for i in range(3)]
    await listening(cache, client, tokens[0])
    for token in tokens:
        await cache.authenticate(client, bearer(token))
    # As psql would, on a connection of its own; the clock stands still.
    db.all("UPDATE {schema}.api_keys SET revoked_at = now() WHERE name = 'bot1'")
    await wait_until(lambda: not cache._keys)  # every key forgotten, not only bot1's
    assert await refused(cache, client, tokens[1]) == "revoked"
    for token in (tokens[0], tokens[2]):
        assert (await cache.authenticate(client, bearer(token))).role is Role.OPERATOR


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE {schema}.api_keys SET role = 'viewer' WHERE name = 'bot'",
        "UPDATE {schema}.api_keys SET name = 'renamed' WHERE name = 'bot'",
        "DELETE FROM {schema}.api_keys WHERE name = 'bot'",
        "TRUNCATE {schema}.api_keys",
    ],
)
async def test_every_kind_of_change_is_announced(
    client: Conveyor, cache: KeyCache, db: DB, change: str
) -> None:
    token = await new_key(client, "bot")
    await listening(cache, client, token)
    before = await cache.authenticate(client, bearer(token))
    db.all(change)
    await wait_until(lambda: not cache._keys)
    if change.startswith(("DELETE", "TRUNCATE")):
        assert await refused(cache, client, token) == "unknown"
    else:
        assert await cache.authenticate(client, bearer(token)) != before


async def test_last_used_writes_announce_nothing(client: Conveyor, cache: KeyCache, db: DB) -> None:
    token = await new_key(client, "bot")
    await listening(cache, client, token)
    await cache.authenticate(client, bearer(token))
    epoch = cache._epoch
    db.all("UPDATE {schema}.api_keys SET last_used_at = now() - interval '1 hour'")
    await cache.authenticate(client, bearer(token))
    # Sync with the listener: a change that is announced arrives after the one before it.
    db.all("UPDATE {schema}.api_keys SET role = 'admin' WHERE name = 'bot'")
    await wait_until(lambda: cache._epoch > epoch)
    assert cache._epoch == epoch + 1


async def test_a_rolled_back_revoke_changes_nothing(client: Conveyor, cache: KeyCache, db: DB) -> None:
    token = await new_key(client, "bot")
    await listening(cache, client, token)
    with db.connect() as conn:
        conn.execute(db.compose("UPDATE {schema}.api_keys SET revoked_at = now()"))
        conn.rollback()
    assert (await cache.authenticate(client, bearer(token))).name == "bot"


async def test_a_wrong_secret_for_a_remembered_prefix_is_unknown(client: Conveyor, cache: KeyCache) -> None:
    token = await new_key(client, "bot")
    await listening(cache, client, token)
    await cache.authenticate(client, bearer(token))
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert await refused(cache, client, wrong) == "unknown"
    assert (await cache.authenticate(client, bearer(token))).name == "bot"


async def test_without_listen_nothing_is_remembered(
    database_url: str, schema: str, clock: Clock, db: DB
) -> None:
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    info.update(host="127.0.0.1", port="1")  # nothing listens there
    nowhere = psycopg.conninfo.make_conninfo(**info)
    async with Conveyor(database_url, schema=schema) as client:
        client.settings = dataclasses.replace(client.settings, listen_url=nowhere)
        cache = KeyCache(clock=clock)
        try:
            token = await new_key(client, "bot")
            for _ in range(3):
                await cache.authenticate(client, bearer(token))
            silently(db, "UPDATE {schema}.api_keys SET revoked_at = now()")
            assert await refused(cache, client, token) == "revoked"
        finally:
            await cache.close()


async def test_a_new_listen_connection_forgets_every_key(client: Conveyor, cache: KeyCache, db: DB) -> None:
    """Notifications sent while LISTEN was down are lost: a new connection forgets all."""
    token = await new_key(client, "bot")
    await listening(cache, client, token)
    await cache.authenticate(client, bearer(token))
    assert cache._keys
    notifier = cache._notifier
    assert notifier is not None
    assert notifier.connection is not None
    first = notifier.connects
    db.all(f"SELECT pg_terminate_backend({notifier.connection.info.backend_pid})")
    await wait_until(lambda: notifier.connects > first and notifier.listening.is_set(), within=30)
    assert not cache._keys
    silently(db, "UPDATE {schema}.api_keys SET revoked_at = now()")
    assert await refused(cache, client, token) == "revoked"


async def test_a_read_overtaken_by_a_revoke_is_not_remembered(
    client: Conveyor, cache: KeyCache, db: DB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C4: the read began before the revoke's notification arrived and ended after: what it
    read (a valid key) must not be kept."""
    token = await new_key(client, "bot")
    await listening(cache, client, token)
    real = keys.authenticate
    revoked = asyncio.Event()

    async def read_then_revoke(database: object, header: str | None) -> object:
        principal = await real(database, header)  # type: ignore[arg-type]
        db.all("UPDATE {schema}.api_keys SET revoked_at = now()")
        await wait_until(lambda: cache._epoch > epoch)
        revoked.set()
        return principal

    epoch = cache._epoch
    monkeypatch.setattr("conveyor.ops.key_cache.authenticate", read_then_revoke)
    assert (await cache.authenticate(client, bearer(token))).name == "bot"  # read before the revoke
    assert revoked.is_set()
    monkeypatch.setattr("conveyor.ops.key_cache.authenticate", real)
    assert await refused(cache, client, token) == "revoked"


@pytest.fixture
def bouncer(database_url: str) -> Iterator[PgBouncer]:
    with pgbouncer(database_url) as pooler:
        yield pooler


async def test_a_listen_that_delivers_nothing_is_never_trusted(
    database_url: str, schema: str, clock: Clock, db: DB, bouncer: PgBouncer
) -> None:
    """C7: LISTEN through PgBouncer in transaction mode succeeds and delivers nothing (the
    session that listened goes back to the pooler's pool): the probe never comes back, so
    nothing is remembered and a revoke nobody hears still holds at once."""
    async with Conveyor(database_url, schema=schema) as client:
        client.settings = dataclasses.replace(client.settings, listen_url=bouncer.url())
        cache = KeyCache(clock=clock)
        try:
            token = await new_key(client, "bot")
            await cache.authenticate(client, bearer(token))
            notifier = cache._notifier
            assert notifier is not None
            await wait_until(notifier.listening.is_set)
            for _ in range(3):
                await cache.authenticate(client, bearer(token))  # the first sends the probe
            # The probe was sent; a notification sent after it arrives after it on a
            # delivering connection (one a direct LISTEN of the test's own hears).
            channel = keys_channel(schema)
            with db.connect(autocommit=True) as direct:
                direct.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                db.all("SELECT pg_notify(%s, 'probe')", [channel])
                assert [n.payload for n in direct.notifies(timeout=10, stop_after=1)] == ["probe"]
            assert cache._delivered != notifier.connects
            assert not cache._keys
            silently(db, "UPDATE {schema}.api_keys SET revoked_at = now()")
            assert await refused(cache, client, token) == "revoked"
        finally:
            await cache.close()
