"""Who is asking: the API key in ``Authorization: Bearer``, checked on every request.

Contract: :meth:`Authenticator.principal` returns the key's Principal or raises. A client
(by default the peer's IP address; behind a proxy, pass ``client_of`` to read the address
the proxy vouches for) that failed ``limit`` times within ``window`` seconds is refused
with 429 and Retry-After before its credentials are looked at; failures are counted per
client in this process (``conveyor.ops.failed_attempts``). The key itself is checked by
``conveyor.ops.key_cache.KeyCache``: constant-time; a key found valid is remembered for a
second at most, and forgotten by every process at the commit of any change to a key (a revoke
holds at once; the invariants are at the top of that module). :meth:`Authenticator.close`
stops the cache's LISTEN.
"""

from __future__ import annotations

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

    async def principal(self, request: Request, client: Conveyor) -> Principal:
        who = self.client_of(request)
        wait = self.attempts.check(who)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise Problem(
                TOO_MANY_ATTEMPTS,
                f"too many failed authentication attempts from this client: try again in {seconds} s",
                headers={"Retry-After": str(seconds)},
            )
        try:
            return await self.keys.authenticate(client, request.headers.get("authorization"))
        except AuthenticationError:
            self.attempts.failed(who)
            raise

    async def close(self) -> None:
        await self.keys.close()
