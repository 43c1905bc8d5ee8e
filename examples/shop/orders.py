"""Placing an order: the order's row and its receipt job in one transaction.

Shared by the Starlette app (``examples.shop.app``) and the FastAPI one
(``examples.shop.fastapi_app``): each turns a request into :class:`OrderIn` and calls
:func:`place_order`.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from conveyor import Conveyor

from .db import Order, Product
from .tasks import send_receipt


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=1000)


class OrderOut(BaseModel):
    id: int
    email: str
    sku: str
    quantity: int
    total_cents: int
    receipt_job: int | None = Field(default=None, description="The receipt's job (when just placed).")
    receipt_sent_at: datetime | None = None

    @classmethod
    def of(cls, order: Order, receipt_job: int | None = None) -> OrderOut:
        return cls(
            id=order.id,
            email=order.email,
            sku=order.sku,
            quantity=order.quantity,
            total_cents=order.total_cents,
            receipt_job=receipt_job,
            receipt_sent_at=order.receipt_sent_at,
        )


class UnknownProduct(Exception):
    pass


class OutOfStock(Exception):
    pass


async def place_order(
    sessions: async_sessionmaker[AsyncSession], conveyor: Conveyor, wanted: OrderIn
) -> OrderOut:
    """Write the order, enqueue its receipt and take the stock, all in one transaction: when
    any step fails, none of them happened (no order without its receipt, no receipt for an
    order that is not there)."""
    try:
        async with sessions() as session, session.begin():
            product = await session.get(Product, wanted.sku)
            if product is None:
                raise UnknownProduct(f"no product {wanted.sku!r}")
            order = Order(
                email=wanted.email,
                sku=wanted.sku,
                quantity=wanted.quantity,
                total_cents=product.price_cents * wanted.quantity,
            )
            session.add(order)
            await session.flush()  # the order's id, for its job
            receipt = await conveyor.enqueue(send_receipt, {"order_id": order.id}, conn=session)
            # Taken last on purpose: past what is left, the CHECK constraint refuses it here,
            # after the job was enqueued, and the rollback takes the order and the job with it.
            await session.execute(
                update(Product).where(Product.sku == wanted.sku).values(stock=Product.stock - wanted.quantity)
            )
    except IntegrityError as exc:
        if getattr(getattr(exc.orig, "diag", None), "constraint_name", None) == "stock_not_negative":
            raise OutOfStock(f"not enough {wanted.sku!r} left for {wanted.quantity}") from None
        raise
    return OrderOut.of(order, receipt)


async def get_order(sessions: async_sessionmaker[AsyncSession], order_id: int) -> OrderOut | None:
    async with sessions() as session:
        order = await session.get(Order, order_id)
        return None if order is None else OrderOut.of(order)
