"""Who is asking: the API key in ``Authorization: Bearer``, checked on every request.

Contract: :meth:`Authenticator.principal` returns the key's Principal or raises. A client
(by default the peer's IP address; behind a proxy, pass ``client_of`` to read the address
the proxy vouches for) that failed ``limit`` times within ``window`` seconds is refused
with 429 and Retry-After before its credentials are looked at; failures are counted per
client in this process (``conveyor.ops.failed_attempts``). A client's failures counted plus
its keys being checked never pass the limit: a request that would, waits for a check under
way to end and sees the count again, so guesses sent all at once get no more looks than
guesses sent in turn (and a valid client's burst checks ``limit`` keys at a time). The key itself is checked by
``conveyor.ops.key_cache.KeyCache``: constant-time; a key found valid is remembered for a
second at most, and forgotten by every process at the commit of any change to a key (a revoke
holds at once; the invariants are at the top of that module). :meth:`Authenticator.close`
stops the cache's LISTEN.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from starlette.requests import Request

from ..errors import AuthenticationError
from ..ops.failed_attempts import FailedAttempts
from ..ops.key_cache import KeyCache
from ..ops.roles import Principal
from ..queue.client import Conveyor
from .problems import TOO_MANY_ATTEMPTS, Problem

ClientOf = Callable[[Request], str]


def peer_address(request: Request) -> str:
    """The address of the connection's other end."""
    return request.client.host if request.client is not None else "unknown"


class Authenticator:
    def __init__(self, attempts: FailedAttempts | None = None, client_of: ClientOf = peer_address) -> None:
        self.attempts = attempts if attempts is not None else FailedAttempts()
        self.client_of = client_of
        self.keys = KeyCache()
        # Client -> its gate: its failures counted plus its keys being checked never pass the
        # limit, so guesses sent all at once get no more looks than guesses sent in turn.
        self._gates: dict[str, _Gate] = {}

    async def principal(self, request: Request, client: Conveyor) -> Principal:
        """The Principal of the request's ``Authorization`` header."""
        return await self.check(request, client, request.headers.get("authorization"))

    async def key_principal(self, request: Request, client: Conveyor, key: str) -> Principal:
        """The Principal of an API key given otherwise (the dashboard's login form and session
        cookie), checked alike: the same cache and the same failed-attempt limit."""
        return await self.check(request, client, f"Bearer {key}")

    async def check(self, request: Request, client: Conveyor, authorization: str | None) -> Principal:
        who = self.client_of(request)
        self._refuse_if_over(who)
        gate = self._gates.get(who)
        if gate is None:
            gate = self._gates[who] = _Gate()
        gate.users += 1
        try:
            async with gate.turn:
                # Failures counted plus checks under way stay within the limit: a check that
                # would pass it waits for one under way to end, then sees the count again.
                while True:
                    self._refuse_if_over(who)
                    if self.attempts.count(who) + gate.checking < self.attempts.limit:
                        break
                    await gate.turn.wait()
                gate.checking += 1
            try:
                return await self.keys.authenticate(client, authorization)
            except AuthenticationError:
                self.attempts.failed(who)
                raise
            finally:
                async with gate.turn:
                    gate.checking -= 1
                    gate.turn.notify_all()
        finally:
            gate.users -= 1
            if not gate.users:
                del self._gates[who]

    def _refuse_if_over(self, who: str) -> None:
        wait = self.attempts.check(who)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise Problem(
                TOO_MANY_ATTEMPTS,
                f"too many failed authentication attempts from this client: try again in {seconds} s",
                headers={"Retry-After": str(seconds)},
            )

    async def close(self) -> None:
        await self.keys.close()


class _Gate:
    def __init__(self) -> None:
        self.turn = asyncio.Condition()
        self.checking = 0  # the client's keys being checked now
        self.users = 0  # the client's requests inside principal()
