"""Webhooks sent by a real `conveyor worker` process, its secrets and settings in its environment."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from conveyor import Conveyor
from conveyor.contrib.webhooks import send_webhook, verify

from ..helpers import DB, REPO, subprocess_env, wait_until_sync
from ..http_receiver import Receiver, Reply, running_receiver

pytestmark = pytest.mark.processes

OLD_SECRET = "whsec_" + base64.b64encode(b"old key for the worker process..").decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"new key for the worker process..").decode()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as server:
        yield server


@pytest.fixture
def worker(database_url: str, schema: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "worker",
            "--tasks",
            "tests.e2e.webhook_tasks",
            "--poll-interval",
            "0.2",
        ],
        cwd=REPO,
        env=subprocess_env(
            database_url,
            schema,
            CONVEYOR_WEBHOOK_SECRET_PARTNER=f"{NEW_SECRET} {OLD_SECRET}",
            CONVEYOR_WEBHOOK_ALLOW_PRIVATE="127.0.0.1/32",
            CONVEYOR_WEBHOOK_TIMEOUT="5s",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate(timeout=10)
        assert OLD_SECRET.removeprefix("whsec_") not in output
        assert NEW_SECRET.removeprefix("whsec_") not in output


def state(db: DB, job_id: int) -> tuple[str, int] | None:
    rows = db.all("select state, attempt from {schema}.jobs where id = %s", [job_id])
    return rows[0] if rows else None


async def test_worker_process_retries_a_500_with_the_same_id_honours_retry_after_and_buries_a_404(
    database_url: str, schema: str, db: DB, receiver: Receiver, worker: subprocess.Popen[str]
) -> None:
    receiver.script("/flaky", Reply(500, b"try later"))
    receiver.script("/busy", Reply(429, b"", {"Retry-After": "7200"}))
    receiver.script("/missing", Reply(404, b"unknown endpoint"))
    async with Conveyor(database_url, schema=schema) as client:
        flaky = await send_webhook(client, receiver.url("/flaky"), {"n": 1}, "partner", event="order.created")
        busy = await send_webhook(client, receiver.url("/busy"), {"n": 2}, "partner")
        missing = await send_webhook(client, receiver.url("/missing"), {"n": 3}, "partner")

    # The 500: back in the queue after the task's backoff (an hour, see webhook_tasks).
    wait_until_sync(lambda: state(db, flaky) == ("scheduled", 1), within=30)
    waits = db.one("select extract(epoch from run_at - now()) from {schema}.jobs where id = %s", [flaky])
    assert 3570 <= waits <= 3600
    assert "HTTP 500 from" in db.one("select errors->-1->>'error' from {schema}.jobs where id = %s", [flaky])
    # The 429: not before its Retry-After, two hours, longer than the backoff.
    wait_until_sync(lambda: state(db, busy) == ("scheduled", 1), within=30)
    waits = db.one("select extract(epoch from run_at - now()) from {schema}.jobs where id = %s", [busy])
    assert 7170 <= waits <= 7200
    # The 404: dead at once.
    wait_until_sync(lambda: db.one("select count(*) from {schema}.dead_jobs where id = %s", [missing]) == 1)
    assert db.one("select attempt from {schema}.dead_jobs where id = %s", [missing]) == 1

    db.all("update {schema}.jobs set run_at = now() where id = %s", [flaky])  # its time has come
    wait_until_sync(
        lambda: db.one("select count(*) from {schema}.job_history where id = %s", [flaky]) == 1, within=30
    )
    first, second = receiver.to("/flaky")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{flaky}"
    for request in (first, second):
        # A receiver that knows only the old secret, or only the new, accepts both.
        assert verify(OLD_SECRET, request.headers, request.body) == f"msg_{flaky}"
        assert verify(NEW_SECRET, request.headers, request.body) == f"msg_{flaky}"
    assert json.loads(second.body)["type"] == "order.created"
    result = db.one("select result from {schema}.job_history where id = %s", [flaky])
    assert (result["status"], result["attempt"], result["url"]) == (200, 2, receiver.url("/flaky"))
    assert len(receiver.to("/busy")) == 1
    assert len(receiver.to("/missing")) == 1
