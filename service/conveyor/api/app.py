"""The HTTP service as one Starlette application: ``create_app``.

Contract:

- Routes: the JSON API under ``/api/v1`` (the route table of ``api.endpoints``), its OpenAPI
  document at ``/api/v1/openapi.json`` and a docs page at ``/api/v1/docs``; ``/health`` and
  ``/metrics`` (``api.health``, ``api.metrics``). All four are public: the JSON API needs a key.
  The dashboard (``conveyor.dashboard``: ``/``, ``/login``, ``/logout``, ``/dashboard/...``)
  shares the app's client and Authenticator; its pages need a session (docs/dashboard.md).
  Anything else under the app is a 404 problem document; a wrong method a 405 one.
- The client: pass an open :class:`~conveyor.Conveyor` (yours: the app never closes it, and
  its deadlines are yours to choose), or a database URL and schema (or neither: the
  environment's, as everywhere) and the app makes its own, with deadlines (``timeouts``,
  by default the workers' from the environment: ``settings.Timeouts.from_env``), so that a
  request on a database link that stopped answering fails as a 503 within a bounded time
  and its connection is replaced, instead of hanging on it. Either way it is opened on first use if it is not open yet, so the app works
  when mounted in another app (Starlette runs no lifespan of a mounted app); when the app's
  own lifespan runs (served alone by uvicorn, or the host calls it: docs/api.md), a client
  the app made is opened at start and closed at the end. A start that cannot reach the
  database is logged and the app still starts: requests answer 503 until it can.
- ``app.state.conveyor`` is the client (for ``/health`` and ``/metrics``, and for host
  endpoints that want to enqueue through the same pool); ``await app.state.open_conveyor()``
  returns it opened (the first call opens a client the app made, if no request has yet).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..dashboard import routes as dashboard_routes
from ..dashboard.jobs_view import redact_fields
from ..errors import ConfigurationError
from ..ops.failed_attempts import FailedAttempts
from ..ops.health import DOWN
from ..queue.client import Conveyor
from ..settings import Timeouts
from ..tasks import Registry
from . import docs_page, openapi
from .auth import Authenticator, ClientOf, peer_address
from .endpoints import GROUPS
from .health import health
from .inputs import DEFAULT_BODY_LIMIT
from .metrics import metrics
from .problems import METHOD_NOT_ALLOWED, ROUTE_NOT_FOUND, Problem, render, unavailable, unexpected
from .routing import Group, Served, path_routes

log = logging.getLogger("conveyor.api")

PREFIX = "/api/v1"


class ClientHolder:
    """The app's client, opened on first use (once, whoever asks first), closed only if the
    app made it."""

    def __init__(self, client: Conveyor, *, owned: bool) -> None:
        self.client = client
        self.owned = owned
        self._open = False
        self._lock = asyncio.Lock()

    async def get(self) -> Conveyor:
        if not self._open:
            async with self._lock:
                if not self._open:
                    try:
                        self.client.db  # noqa: B018 - raises if the client is not open
                    except ConfigurationError:
                        await self.client.open()
                    self._open = True
        return self.client

    async def close(self) -> None:
        if self.owned and self._open:
            await self.client.close()
            self._open = False


def create_app(
    conveyor: Conveyor | None = None,
    *,
    database_url: str | None = None,
    schema: str | None = None,
    registry: Registry | None = None,
    pool_size: int = 10,
    timeouts: Timeouts | None = None,
    body_limit: int = DEFAULT_BODY_LIMIT,
    failed_attempts: FailedAttempts | None = None,
    client_of: ClientOf = peer_address,
    groups: Sequence[Group] = GROUPS,
    redact: Iterable[str] | None = None,
) -> Starlette:
    """The API as an ASGI app; mount it with ``app.mount("/jobs", create_app(...))``.

    ``registry``: the tasks this process knows (for the client the app makes; default: the
    tasks imported here), so arguments are checked against their signatures; a task only
    workers know is enqueued by name. ``timeouts``: the deadlines of that client's database
    work (default: ``Timeouts.from_env()``, the workers' own: CONVEYOR_STATEMENT_TIMEOUT and
    the rest); a client you pass keeps its own. ``body_limit``: the largest request body, in bytes.
    ``failed_attempts``: the per-client limit on failed authentications (10 a minute).
    ``client_of``: the client's identity for that limit (default: the peer's IP address).
    ``redact``: the field names the dashboard hides in a job's arguments and result, at any
    depth, case-insensitively (default: CONVEYOR_DASHBOARD_REDACT's, comma-separated, or
    password, secret, token, api_key, authorization; docs/dashboard.md).
    """
    if conveyor is not None and (
        database_url is not None or schema is not None or registry is not None or timeouts is not None
    ):
        raise ConfigurationError("pass a Conveyor client, or database_url/schema/registry/timeouts, not both")
    if not isinstance(body_limit, int) or body_limit < 1:
        raise ConfigurationError(f"body_limit must be a positive number of bytes, got {body_limit!r}")
    owned = conveyor is None
    client = conveyor or Conveyor(
        database_url,
        schema=schema,
        registry=registry,
        pool_size=pool_size,
        timeouts=timeouts if timeouts is not None else Timeouts.from_env(),
    )
    holder = ClientHolder(client, owned=owned)
    authenticator = Authenticator(failed_attempts, client_of)
    served = Served(holder.get, authenticator, body_limit)

    routes: list[BaseRoute] = path_routes(PREFIX, [e for group in groups for e in group.endpoints], served)
    documents: dict[str, dict[str, Any]] = {}

    def document_for(request: Request) -> dict[str, Any]:
        server = request.scope.get("root_path", "") or "/"
        if server not in documents:
            documents[server] = openapi.document(groups, prefix=PREFIX, server=server)
        return documents[server]

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(document_for(request))

    async def docs(request: Request) -> Response:
        url = request.scope.get("root_path", "") + PREFIX + "/openapi.json"
        return HTMLResponse(docs_page.render(document_for(request), openapi_url=url))

    async def health_check(request: Request) -> Response:
        try:
            await holder.get()
        except Exception as exc:
            if not unavailable(exc):
                raise
            reason = f"the database is unreachable ({type(exc).__name__})"
            return JSONResponse(
                {"status": DOWN, "reasons": [reason]}, status_code=503, headers={"Cache-Control": "no-store"}
            )
        return await health(request)

    async def prometheus(request: Request) -> Response:
        try:
            await holder.get()
        except Exception as exc:
            if not unavailable(exc):
                raise
            return render(unexpected(exc, method=request.method, path=request.url.path))
        return await metrics(request)

    routes += [
        Route(PREFIX + "/openapi.json", openapi_json, methods=["GET"], include_in_schema=False),
        Route(PREFIX + "/docs", docs, methods=["GET"], include_in_schema=False),
        Route("/health", health_check, methods=["GET"], include_in_schema=False),
        Route("/metrics", prometheus, methods=["GET"], include_in_schema=False),
        *dashboard_routes(
            holder.get, authenticator, redact=None if redact is None else redact_fields(redact)
        ),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if owned:
            try:
                await holder.get()
            except Exception as exc:
                if not unavailable(exc):
                    raise
                log.warning("API: the database cannot be reached at start (%s); requests will retry", exc)
        try:
            yield
        finally:
            await authenticator.close()
            await holder.close()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_exception, Exception: _server_error},
    )
    app.state.conveyor = client
    app.state.open_conveyor = holder.get  # `await app.state.open_conveyor()`: the client, opened
    return app


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) as problem documents."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        problem = Problem(METHOD_NOT_ALLOWED, f"{request.method} is not allowed here", headers=headers)
    elif exc.status_code == 404:
        problem = Problem(ROUTE_NOT_FOUND, f"no endpoint at {request.url.path}", headers=headers)
    else:  # pragma: no cover - Starlette raises no other itself
        problem = unexpected(exc, method=request.method, path=request.url.path)
    return render(problem, instance=request.url.path)


async def _server_error(request: Request, exc: Exception) -> Response:
    return render(unexpected(exc, method=request.method, path=request.url.path))
