"""The shop's background job: a receipt for each order.

Run it with ``conveyor worker --tasks examples.shop.tasks --queues emails``. The job is
enqueued in the order's own transaction (``examples.shop.orders``), so it never runs for an
order that was rolled back, and the order's row is there when it runs.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from conveyor import Discard, task

from .db import Order, make_engine, make_sessions

log = logging.getLogger(__name__)

_sessions: async_sessionmaker[AsyncSession] | None = None


def sessions() -> async_sessionmaker[AsyncSession]:
    """The worker's sessions on the shop's tables (made on first use, from DATABASE_URL)."""
    global _sessions
    if _sessions is None:
        _sessions = make_sessions(make_engine())
    return _sessions


@task(queue="emails", max_attempts=5)
async def send_receipt(order_id: int) -> dict[str, Any]:
    """Send the order's receipt once. Jobs are delivered at least once (a worker that dies
    mid-job has it run again), so the order records that its receipt went out, in the same
    transaction that reads it under a lock."""
    async with sessions()() as session, session.begin():
        order = await session.get(Order, order_id, with_for_update=True)
        if order is None:  # cannot happen while the job commits with its order; say so if it does
            raise Discard(f"no order {order_id}")
        if order.receipt_sent_at is None:
            # A real shop sends the e-mail here (SMTP, or a provider's HTTP API).
            log.info("receipt for order %d sent to %s", order.id, order.email)
            order.receipt_sent_at = datetime.now(UTC)
        return {"order_id": order.id, "to": order.email, "total_cents": order.total_cents}
