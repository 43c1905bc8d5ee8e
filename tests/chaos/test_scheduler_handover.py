"""Scheduler hand-overs under SIGKILL and SIGSTOP: exactly one job per fire time
(tests/chaos/scheduler_handover.py has the scenario and its long-run command)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .scheduler_handover import LEASE, TICK, run_handover

pytestmark = pytest.mark.processes


def test_killed_and_paused_leaders_hand_over_and_every_second_fires_exactly_once(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    result = run_handover(database_url, schema, fires=60, folder=tmp_path)
    print("\n" + result.summary())
    assert result.fires >= 60
    assert [h.how for h in result.handovers][:2] == ["kill", "pause"]
    assert all(paused > LEASE + 1 for paused in result.paused_for), result.paused_for
    # A killed leader's lease runs out, then a follower takes over on its next tick (one second
    # more for process scheduling on 2 shared cores).
    assert max(h.takeover for h in result.handovers) <= LEASE + TICK + 1.0
    assert set(result.exit_codes) == {0}, result.exit_codes  # none stuck, none failed
