"""PostgreSQL restarted (fast, then immediate) under real worker, scheduler and API processes
while jobs are enqueued continuously (tests/chaos/restarts.py has the scenario and its
long-run command)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .cluster import Cluster
from .restarts import run_restarts

pytestmark = pytest.mark.processes


def test_processes_ride_out_fast_and_immediate_restarts_and_lose_no_acknowledged_job(
    cluster: Cluster, restart_schema: str, tmp_path: Path
) -> None:
    result = run_restarts(cluster, restart_schema, restarts=2, folder=tmp_path)
    print("\n" + result.summary())
    assert [r.mode for r in result.recoveries] == ["fast", "immediate"]
    assert result.lost == []
    assert result.dead == 0
    assert result.unclear == []  # a refused enqueue says the database is unavailable
    assert all(count > 0 for count in result.acknowledged.values()), result.acknowledged
    # Back to milliseconds within seconds, not the 30 s poll interval. LISTEN is back within a
    # second; a claim that began while the server was down waits for the worker's pool, whose
    # reconnect attempts back off (psycopg_pool: 1 s, doubling): up to about 8 s measured
    # (tests/chaos/results/restarts.jsonl).
    assert max(r.latency_back for r in result.recoveries) < 15, result.recoveries
    assert set(result.exit_codes.values()) == {0}, result.exit_codes  # none stuck on SIGTERM
