"""The user's path: a `conveyor worker` process running the example e-mail module
(tasks/email_example.py: the ready task and a rate-limited "emails" queue), configured by its
environment alone (STARTTLS, credentials, CA file), sending to a real SMTP server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.contrib.email import send_email
from conveyor.errors import JobFailed

from ..helpers import REPO, subprocess_env, wait_until
from ..smtp_server import Credentials, Handler, self_signed_certificate, server_tls_context, smtp_server

pytestmark = pytest.mark.processes

PASSWORD = "s3cret-Smtp-passw0rd"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Handler, int, Path]]:
    cert, key = self_signed_certificate(tmp_path)
    with smtp_server(
        tls_context=server_tls_context(cert, key), credentials=Credentials("mailer", PASSWORD)
    ) as (handler, port):
        yield handler, port, cert


def start_worker_process(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "worker",
            "--tasks",
            "tasks.email_example",
            "--poll-interval",
            "0.2",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def json_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


async def test_a_worker_process_sends_retries_a_4xx_and_buries_a_5xx(
    database_url: str, schema: str, tls_server: tuple[Handler, int, Path]
) -> None:
    handler, port, cert = tls_server
    handler.data_replies = ["451 4.3.0 Mail server temporarily rejected message"]
    handler.refuse = {"gone@example.com": "550 5.1.1 No such user here"}
    env = subprocess_env(
        database_url,
        schema,
        CONVEYOR_LOG_FORMAT="json",
        CONVEYOR_SMTP_HOST="127.0.0.1",
        CONVEYOR_SMTP_PORT=str(port),
        CONVEYOR_SMTP_SECURITY="starttls",
        CONVEYOR_SMTP_USERNAME="mailer",
        CONVEYOR_SMTP_PASSWORD=PASSWORD,
        CONVEYOR_SMTP_CA_FILE=str(cert),
        CONVEYOR_SMTP_FROM="Shop <shop@example.com>",
        CONVEYOR_SMTP_TIMEOUT="10s",
    )
    worker = start_worker_process(env)
    try:
        async with Conveyor(database_url, schema=schema) as client:
            greylisted = await send_email(client, "ada@example.com", "Your order", "Thanks for your order.")

            async def waiting_to_retry() -> bool:
                job = await client.get_job(greylisted)
                return bool(job["state"] == "scheduled" and job["attempt"] == 1)

            await wait_until(waiting_to_retry, within=30)
            await client.run_now(greylisted)  # rather than wait out the task's 30 s backoff
            result = await client.result(greylisted, timeout=30)

            refused = await send_email(client, "gone@example.com", "Your order", "Thanks.")
            with pytest.raises(JobFailed, match=r"550 5\.1\.1 No such user here"):
                await client.result(refused, timeout=30)
            dead = await client.get_job(refused)
            [limits] = await client.queue_limits("emails")  # as the example module declares them
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output[-3000:]

    assert result["accepted"] == ["ada@example.com"]
    assert [(r.login, r.tls, r.recipients) for r in handler.received] == [
        ("mailer", True, ["ada@example.com"])
    ]
    assert handler.received[0].message["From"] == "Shop <shop@example.com>"
    assert (dead["state"], dead["attempt"]) == ("dead", 1)
    assert limits.limits.describe() == "rate 100/1m, concurrency 5"

    failures = [line for line in json_lines(output) if line.get("event") == "email_failed"]
    assert [(f["job_id"], f["attempt"], f["permanent"], f["smtp_code"]) for f in failures] == [
        (greylisted, 1, False, 451),
        (refused, 1, True, 550),
    ]
    assert all(f["logger"] == "conveyor.email" and f["smtp_server"] == f"127.0.0.1:{port}" for f in failures)
    assert PASSWORD not in output
    assert PASSWORD not in json.dumps(dead, default=str)
