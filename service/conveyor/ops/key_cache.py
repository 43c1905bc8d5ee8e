"""API keys an API process has just found valid, remembered for a second at most.

Checking a key is a statement per request, and on a busy API it was a third of each request's
work. This cache removes it for the requests of the next second, without weakening the rule
that a revoked key stops working at once.

Invariants (C1-C6):

- C1. Only a key the database found valid is remembered: its prefix, the SHA-256 of its
  secret, and its :class:`Principal`. A refusal is never remembered (every failure reads the
  database, and is counted by the caller's failed-attempt limit as before).
- C2. A remembered key is used only while this process LISTENs on ``<schema>.keys`` on the
  same connection as when the key was read (the connection count has not moved), and for at
  most :data:`REMEMBER_FOR` seconds after the read began, and only once a notification has
  arrived on that connection (C7). Without LISTEN (not yet up, or lost) every request reads
  the database.
- C3. Any change to a key (revoke, role, name, secret, a row removed; from Conveyor, psql or
  anywhere) notifies ``<schema>.keys`` from a trigger in the changing transaction
  (sql/migrations/0013_api_key_changes.up.sql), so the notification arrives at its commit. A
  notification, and a new LISTEN connection (notifications were lost meanwhile), forget
  every key and advance the epoch.
- C4. A read that began in an earlier epoch is not remembered: a revoke that commits while a
  request reads the key cannot be undone by that request storing what it read.
- C5. A hit compares the presented secret's hash with the remembered one in constant time; a
  mismatch goes to the database, as a miss does.
- C6. A key is remembered only in an epoch in which the schema was seen to announce key
  changes (the trigger of version 13 is there and enabled; checked once an epoch, after a
  key's read): the API can run on a schema before version 13, or while 0013 is downgraded
  (whose downgrade notifies, so that every process forgets and checks again).
- C7. A LISTEN connection is trusted only once it has delivered a notification: on its first
  miss after connecting, the cache sends ``probe`` on the channel through the pool, and
  remembers nothing until a notification (that one, or any other) comes back on it. A LISTEN
  that succeeds and delivers nothing (through a pooler in transaction mode, where the
  session that listened is not the one kept) is never trusted, so nothing is remembered. A
  ``probe`` is the only payload that does not make the cache forget.

So a revoke holds in a process from the moment its notification reaches the process (the
commit plus a delivery on loopback), and within REMEMBER_FOR even on a LISTEN link that went
silent without an error (the notifier's watchdog then replaces it). ``last_used_at`` is
still written by the database read, at most once a minute per key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..queue.client import Conveyor
from ..queue.notifier import Notifier
from .keys import authenticate, hash_secret, key_changes_announced, parse_authorization
from .roles import Principal

# How long a key found valid is used without reading it again (C2).
REMEMBER_FOR = 1.0


def keys_channel(schema: str) -> str:
    """The channel key changes of ``schema`` are announced on, as the trigger makes it."""
    return f"{schema[:58]}.keys"


@dataclass(frozen=True)
class _Remembered:
    secret_hash: bytes
    principal: Principal
    read_at: float  # the cache's clock when the database read began
    connection: int  # the notifier's connection count then


class KeyCache:
    """Authenticates as :func:`conveyor.ops.keys.authenticate` does, remembering valid keys
    (see the module's invariants). One per API app; :meth:`close` stops its LISTEN."""

    def __init__(
        self, remember_for: float = REMEMBER_FOR, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """``clock``: seconds on a clock that never goes back (tests move one of their own)."""
        self.remember_for = remember_for
        self._clock = clock
        self._keys: dict[str, _Remembered] = {}
        self._epoch = 0
        self._announced = -1  # the epoch in which the schema was seen to announce key changes
        self._delivered = 0  # the LISTEN connection (its count) that delivered a notification (C7)
        self._probed = 0  # the LISTEN connection a probe was sent for
        self._notifier: Notifier | None = None
        self._task: asyncio.Task[None] | None = None

    async def authenticate(self, client: Conveyor, header_value: str | None) -> Principal:
        prefix, secret = parse_authorization(header_value)
        notifier = self._listen(client)
        remembered = self._keys.get(prefix)
        if (
            remembered is not None
            and self._usable(remembered, notifier)
            and hmac.compare_digest(hash_secret(secret), remembered.secret_hash)
        ):
            return remembered.principal
        epoch, connection, began = self._epoch, notifier.connects, self._clock()
        principal = await authenticate(client.db, header_value)
        if notifier.listening.is_set() and self._probed != connection and self._delivered != connection:
            self._probed = connection  # C7: once per connection
            await client.db.fetch("probe_keys_channel", {"channel": keys_channel(client.settings.schema)})
        if self._announced != epoch and epoch == self._epoch:
            # C6: read after the key, so a downgrade that commits before the key is stored
            # either shows here or has advanced the epoch (its notification).
            announced = await key_changes_announced(client.db)
            if announced and epoch == self._epoch:
                self._announced = epoch
        if (
            epoch == self._epoch
            and self._announced == epoch
            and notifier.listening.is_set()
            and connection == notifier.connects
            and self._delivered == connection
        ):
            self._keys[prefix] = _Remembered(hash_secret(secret), principal, began, connection)
        return principal

    def forget(self) -> None:
        """Forget every key (a key changed, or LISTEN was set up again)."""
        self._keys.clear()
        self._epoch += 1

    def _heard(self, payload: str) -> None:
        """A notification on the keys channel: the connection delivers (C7); unless it is a
        probe, a key changed (C3)."""
        if self._notifier is not None:
            self._delivered = self._notifier.connects
        if payload != "probe":
            self.forget()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._notifier = None
        self.forget()

    def _usable(self, remembered: _Remembered, notifier: Notifier) -> bool:
        return (
            notifier.listening.is_set()
            and remembered.connection == notifier.connects
            and self._delivered == notifier.connects
            and self._clock() - remembered.read_at < self.remember_for
        )

    def _listen(self, client: Conveyor) -> Notifier:
        """The notifier, started on first use (and again if its task ended)."""
        if self._notifier is None:
            settings, queries = client.settings, client.db.queries
            self._notifier = Notifier(
                settings.listen_url or settings.database_url or client.db.conninfo,
                queries,
                self._heard,
                on_connect=self.forget,
                timeouts=settings.timeouts,
                listen=queries.compose("listen_keys", channel=(keys_channel(settings.schema),)),
            )
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._notifier.run(), name="conveyor-api-keys-listen")
        return self._notifier
