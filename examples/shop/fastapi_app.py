"""The shop as a FastAPI application: the same endpoints as ``examples.shop.app``, and the
Conveyor API mounted under ``/jobs``.

    DATABASE_URL=postgresql://... uvicorn examples.shop.fastapi_app:create_shop --factory
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException

from conveyor import Conveyor
from conveyor.api import create_app

from .db import make_engine, make_sessions
from .orders import OrderIn, OrderOut, OutOfStock, UnknownProduct, get_order, place_order


def create_shop(
    database_url: str | None = None, *, conveyor_schema: str | None = None, shop_schema: str | None = None
) -> FastAPI:
    """The arguments are those of ``examples.shop.app.create_shop``."""
    engine = make_engine(database_url, schema=shop_schema)
    sessions = make_sessions(engine)
    conveyor = Conveyor(database_url, schema=conveyor_schema)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with conveyor:
            yield
        await engine.dispose()

    app = FastAPI(title="Shop", lifespan=lifespan)

    @app.post("/orders", status_code=201)
    async def create_order(wanted: OrderIn) -> OrderOut:
        try:
            return await place_order(sessions, conveyor, wanted)
        except UnknownProduct as exc:
            raise HTTPException(404, str(exc)) from None
        except OutOfStock as exc:
            raise HTTPException(409, str(exc)) from None

    @app.get("/orders/{order_id}")
    async def show_order(order_id: int) -> OrderOut:
        order = await get_order(sessions, order_id)
        if order is None:
            raise HTTPException(404, "no such order")
        return order

    app.mount("/jobs", create_app(conveyor))  # the Conveyor API, at /jobs/api/v1/...
    return app
