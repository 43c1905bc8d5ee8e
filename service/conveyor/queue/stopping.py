"""Stopping background tasks for sure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("conveyor")


async def cancel_and_wait(tasks: Sequence[asyncio.Task[Any]], *, rounds: int = 20) -> None:
    """Cancel tasks and wait for them, cancelling again any that carry on.

    One cancel is not always enough: on Python 3.11 a cancellation that lands while a pool
    hands over a connection can be lost (asyncio.wait_for, fixed in 3.12), and a loop that
    only ends when cancelled would then run forever.
    """
    pending = {task for task in tasks if not task.done()}
    for _ in range(rounds):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    if pending:
        log.error("%d background tasks would not stop: %s", len(pending), [t.get_name() for t in pending])
