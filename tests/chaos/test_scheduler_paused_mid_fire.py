"""A scheduler leader paused (SIGSTOP) in the middle of a fire, its transaction open and the
schedule's row locked: the other scheduler must take over and fire on time again while it is
still paused (the server ends the paused transaction after the statement timeout), and the
paused one, resumed, must neither fire twice nor stop the schedule."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from ..helpers import DB, subprocess_env, wait_until_sync
from .scheduler_handover import (
    LEASE,
    HandoverResult,
    Schedulers,
    check_fires,
    create_schedule,
    wait_fires,
    wait_on_time_fires,
)

pytestmark = pytest.mark.processes

STATEMENT_TIMEOUT = 3.0


def slow_fires(db: DB) -> None:
    """Each fire spends 0.3 s in its transaction: a pause can be sent in the middle."""
    db.all(
        "CREATE FUNCTION {schema}.slow_fire() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$;"
        " CREATE TRIGGER slow_fire BEFORE INSERT ON {schema}.schedule_fires"
        " FOR EACH ROW EXECUTE FUNCTION {schema}.slow_fire()"
    )


def fire_in_flight(db: DB) -> int | None:
    """The server process of a fire statement running now, if one is."""
    rows = db.all(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'"
        " AND query LIKE '%%fire_schedule_v1%%' AND pid <> pg_backend_pid()"
    )
    return rows[0][0] if rows else None


def session_state(db: DB, pid: int) -> str | None:
    rows = db.all("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid])
    return rows[0][0] if rows else None


def stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


async def test_a_leader_paused_mid_fire_holds_up_no_fire_and_fires_nothing_twice(
    database_url: str, schema: str, db: DB, tmp_path: Path
) -> None:
    slow_fires(db)
    env = subprocess_env(
        database_url, schema, PYTHONUNBUFFERED="1", CONVEYOR_STATEMENT_TIMEOUT=str(STATEMENT_TIMEOUT)
    )
    group = Schedulers(db, env, tmp_path)
    try:
        group.start()
        group.start()
        # Defined once they run: a schedule defined earlier would owe the fire times since, all
        # fired in one slowed-down transaction.
        group.wait_started()
        await create_schedule(database_url, schema)
        wait_fires(db, 2)
        leader, _ = group.wait_leader()
        for _attempt in range(5):  # the pause may land just after the fire committed: again
            wait_until_sync(lambda: fire_in_flight(db) is not None, within=10, interval=0.01)
            backend = fire_in_flight(db)
            leader.signal(signal.SIGSTOP)
            assert backend is not None
            wait_until_sync(lambda b=backend: session_state(db, b) != "active", within=5, interval=0.01)
            if session_state(db, backend) == "idle in transaction":
                break  # paused with its fire's transaction open, the schedule's row locked
            leader.signal(signal.SIGCONT)
        else:
            pytest.fail("could not pause the leader in the middle of a fire")

        # The other scheduler takes the lease, and fires again while the leader is still paused.
        group.wait_leader(other_than=leader.pid)
        wait_on_time_fires(db, 2)
        assert stopped(leader.pid)
        leader.signal(signal.SIGCONT)
        wait_on_time_fires(db, 3)  # the resumed process stopped nothing

        codes = group.stop_all()
        assert codes == [0, 0], group.outputs()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{group.outputs()}") from exc
    finally:
        group.kill_all()
    result = HandoverResult()
    check_fires(db, result)
    assert db.one("SELECT error FROM {schema}.schedules") is None
    print(
        f"\n{result.fires} fires, {result.late} late, latest {result.max_lateness:.2f} s late, longest silence "
        f"{result.longest_silence:.2f} s (lease {LEASE} s, statement timeout {STATEMENT_TIMEOUT} s)"
    )
    assert result.longest_silence < LEASE + STATEMENT_TIMEOUT + 3
