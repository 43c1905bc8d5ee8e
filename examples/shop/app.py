"""The shop as a Starlette application: ``POST /orders``, ``GET /orders/{id}``, and the
Conveyor API mounted under ``/jobs``.

    DATABASE_URL=postgresql://... uvicorn examples.shop.app:create_shop --factory

(``conveyor migrate`` first for Conveyor's schema, and ``python -m examples.shop.setup``
for the shop's tables; docs/examples.md walks through it.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from conveyor import Conveyor
from conveyor.api import create_app

from .db import make_engine, make_sessions
from .orders import OrderIn, OutOfStock, UnknownProduct, get_order, place_order


def create_shop(
    database_url: str | None = None, *, conveyor_schema: str | None = None, shop_schema: str | None = None
) -> Starlette:
    """``database_url``: default DATABASE_URL; ``conveyor_schema``: Conveyor's schema (default
    CONVEYOR_SCHEMA, else ``conveyor``); ``shop_schema``: the shop's (default SHOP_SCHEMA, else
    the search_path)."""
    engine = make_engine(database_url, schema=shop_schema)
    sessions = make_sessions(engine)
    conveyor = Conveyor(database_url, schema=conveyor_schema)

    async def create_order(request: Request) -> Response:
        try:
            wanted = OrderIn.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"detail": exc.errors(include_url=False)}, status_code=422)
        try:
            order = await place_order(sessions, conveyor, wanted)
        except UnknownProduct as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        except OutOfStock as exc:
            return JSONResponse({"detail": str(exc)}, status_code=409)
        return Response(order.model_dump_json(), status_code=201, media_type="application/json")

    async def show_order(request: Request) -> Response:
        order = await get_order(sessions, request.path_params["order_id"])
        if order is None:
            return JSONResponse({"detail": "no such order"}, status_code=404)
        return Response(order.model_dump_json(), media_type="application/json")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with conveyor:  # the shop's client: the mounted API uses it too
            yield
        await engine.dispose()

    return Starlette(
        routes=[
            Route("/orders", create_order, methods=["POST"]),
            Route("/orders/{order_id:int}", show_order),
            Mount("/jobs", app=create_app(conveyor)),  # the Conveyor API, at /jobs/api/v1/...
        ],
        lifespan=lifespan,
    )
