"""One outcome the database refuses for want of resources every time it is written (53xxx:
here a trigger stands in for a result too large for the memory or disk the server has left,
while smaller writes pass). Found in review: the completer retried 53xxx forever without
splitting its batch or moving on, and kept the batch's leases fresh, so every later outcome
of that worker waited behind it. Now the refused outcome is set aside while the others are
written, and given up once they went through and it is refused again."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from conveyor import Registry

from ..helpers import DB, wait_until

ran: list[int] = []


@pytest.fixture
def registry() -> Registry:
    registry = Registry()

    @registry.task(name="echo")
    def echo(n: int, poison: bool = False) -> int:
        ran.append(n)
        return n

    return registry


async def test_one_outcome_refused_with_53100_every_time_does_not_hold_up_the_others(
    db: DB, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="conveyor.worker")
    db.all(
        """
        CREATE FUNCTION {schema}.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.args ? 'poison' THEN
                RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_poison BEFORE INSERT ON {schema}.job_history
            FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_poison();
        """
    )
    ran.clear()
    poison = db.one("SELECT {schema}.enqueue('echo', %s::jsonb)", ['{"n": 0, "poison": true}'])
    async with start_worker(concurrency=4, lease=3.0) as worker:
        await wait_until(lambda: worker.stats.write_errors > 0, within=10)
        for n in range(1, 6):
            db.all("SELECT {schema}.enqueue('echo', %s::jsonb)", [f'{{"n": {n}}}'])
        await wait_until(lambda: set(ran) == {0, 1, 2, 3, 4, 5}, within=10)
        # Five leases: the plain jobs' outcomes must be written by then.
        await wait_until(lambda: db.one("SELECT count(*) FROM {schema}.job_history") == 5, within=15)
        # The poison's own outcome is given up (its lease runs out and it runs again), once
        # the others went through: never before.
        await wait_until(
            lambda: any(
                f"could not record the outcome of job {poison} " in r.getMessage() for r in caplog.records
            ),
            within=15,
        )
        assert db.one("SELECT count(*) FROM {schema}.job_history") == 5
        assert any(
            "set aside while the outcomes behind it are written" in r.getMessage() for r in caplog.records
        )
