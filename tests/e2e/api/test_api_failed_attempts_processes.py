"""The failed-authentication limit of `conveyor api --workers 2`.

docs/api.md: a client that fails 10 times within a minute is refused with 429, and each
server process counts on its own (conveyor.ops.failed_attempts keeps the count in memory),
so with --workers N a client gets at most N x 10 failures a minute looked at. Which process
accepts a connection is the kernel's choice, so the split between them is not pinned: at
least one process's allowance, and never more than all of theirs together.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ...helpers import subprocess_env, wait_until_sync
from .test_api_commands import children, conveyor, serving

pytestmark = pytest.mark.processes

LIMIT = 10  # docs/api.md
PROCESSES = 2
WRONG = {"Authorization": "Bearer cvk_000000000000_" + "A" * 43}  # well-formed, unknown


def test_ten_failures_a_minute_are_allowed_per_api_process(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    env = subprocess_env(database_url, schema, PYTHONUNBUFFERED="1")
    args = ["api", "--port", "0", "--workers", str(PROCESSES), "--no-access-log"]
    with conveyor(*args, env=env, folder=tmp_path) as api:
        url = api.url()
        wait_until_sync(lambda: len(children(api.popen.pid)) >= PROCESSES, within=60)

        wait_until_sync(lambda: serving(url), within=60)
        statuses = []
        for _ in range(3 * LIMIT):
            # A connection per request, as separate clients behind one address make them: the
            # kernel hands each to whichever server process accepts first.
            with httpx.Client(base_url=url, timeout=30) as http:
                statuses.append(http.get("/api/v1/queues", headers=WRONG).status_code)
        assert api.stop() == 0, str(api)

    assert set(statuses) <= {401, 429}, statuses
    looked_at = statuses.count(401)
    assert statuses[:LIMIT] == [401] * LIMIT, statuses  # no process refuses before its limit
    assert LIMIT <= looked_at <= PROCESSES * LIMIT, (
        f"{looked_at} failed attempts were looked at within a minute, "
        f"not from {LIMIT} to {PROCESSES} x {LIMIT}: {statuses}"
    )
