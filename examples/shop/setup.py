"""Create the shop's tables with two sample products: ``python -m examples.shop.setup``
(DATABASE_URL, and SHOP_SCHEMA if its tables go elsewhere than the search_path)."""

from __future__ import annotations

import asyncio

from .db import create_tables, make_engine


async def main() -> None:
    engine = make_engine()
    try:
        await create_tables(engine)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
