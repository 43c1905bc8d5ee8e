"""A task for the queue page's tests: it runs until the test opens its gate (a file appears),
so the test decides when work finishes. Imported by the test (the API enqueues it) and by
its worker processes (``conveyor worker --tasks tests.e2e.dashboard.queue_tasks``)."""

from __future__ import annotations

import time
from pathlib import Path

from conveyor import task

from ..api_tasks import QUEUE


@task(queue=QUEUE)
def dash_gated(gate: str) -> str:
    while not Path(gate).exists():
        time.sleep(0.05)
    return "through"
