"""Job arguments never reach the logs (docs/security.md, "Secrets"): a worker logs a job's
id, task, queue, attempts and error, never its arguments or result, whatever becomes of it."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from conveyor import Backoff, Conveyor, JobContext, Registry

from ..helpers import DB, wait_until

SECRET = "s3cret-Pa55word-in-args"
PERSONAL = "ada.lovelace@example.com"


async def test_a_worker_logs_no_argument_or_result_of_jobs_that_complete_retry_and_die(
    client: Conveyor, registry: Registry, db: DB, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    @registry.task(max_attempts=2, backoff=Backoff(base=0.01, jitter=0.0))
    async def sign_up(email: str, password: str, fail: bool, ctx: JobContext) -> dict[str, str]:
        if fail or ctx.attempt == 1:
            raise RuntimeError("the directory refused the sign-up")
        return {"email": email, "password": password}

    caplog.set_level(logging.DEBUG)
    ok = await client.enqueue(sign_up, {"email": PERSONAL, "password": SECRET, "fail": False})
    doomed = await client.enqueue(sign_up, {"email": PERSONAL, "password": SECRET, "fail": True})
    async with start_worker():
        await wait_until(lambda: db.all("select 1 from {schema}.job_history where id = %s", [ok]) != [])
        await wait_until(lambda: db.all("select 1 from {schema}.dead_jobs where id = %s", [doomed]) != [])
    # The job ran as asked: its arguments and result are in the database, not in the logs.
    assert db.one("select result from {schema}.job_history where id = %s", [ok])["password"] == SECRET
    events = {getattr(r, "event", None) for r in caplog.records}
    assert {"retry", "dead"} <= events  # the failures were logged
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        assert SECRET not in text, record.getMessage()
        assert PERSONAL not in text, record.getMessage()
