"""The shop's own tables and its database engine: SQLAlchemy 2, async, on psycopg 3.

Conveyor enqueues on the psycopg connection under a SQLAlchemy session, so the engine must
use the psycopg 3 driver (``postgresql+psycopg://``); ``database_url`` turns the plain
``postgresql://`` URL most deployments have into that. One ``DATABASE_URL`` then serves the
shop's engine and Conveyor alike.
"""

from __future__ import annotations

import os
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, String, func
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"
    # Taking more than is left fails here, in the database, whoever else is ordering.
    __table_args__ = (CheckConstraint("stock >= 0", name="stock_not_negative"),)

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str]
    price_cents: Mapped[int]
    stock: Mapped[int]


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    quantity: Mapped[int]
    total_cents: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    receipt_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


SAMPLE_PRODUCTS = (
    Product(sku="mug", name="Conveyor mug", price_cents=1200, stock=100),
    Product(sku="poster", name="Signed poster", price_cents=2500, stock=2),
)


def database_url(url: str | None = None) -> str:
    """``url`` (default: DATABASE_URL) for SQLAlchemy, with the psycopg 3 driver."""
    url = url or os.environ["DATABASE_URL"]
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


def make_engine(url: str | None = None, *, schema: str | None = None) -> AsyncEngine:
    """The shop's engine. ``schema``: the PostgreSQL schema of its tables (default: SHOP_SCHEMA,
    else the connection's search_path, usually ``public``)."""
    engine = create_async_engine(database_url(url), pool_size=5)
    schema = schema or os.environ.get("SHOP_SCHEMA")
    if schema:
        engine = engine.execution_options(schema_translate_map={None: schema})
    return engine


def make_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def create_tables(engine: AsyncEngine, *, products: bool = True) -> None:
    """The shop's tables (a real shop has migrations for this), with the sample products."""
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    if products:
        async with make_sessions(engine)() as session, session.begin():
            for product in SAMPLE_PRODUCTS:
                await session.merge(product)
