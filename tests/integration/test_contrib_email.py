"""The e-mail task against a real SMTP server (aiosmtpd) the tests start, run by a real worker.

Each test's registry holds the e-mail task with 3 attempts and a 50 ms backoff, so retries
happen at once; the worker and the client are this test's (conftest.start_worker, client).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor import ArgumentsError, Backoff, Conveyor, Registry
from conveyor.contrib import email as contrib_email
from conveyor.contrib.email import SEND_TASK, EmailSettings, configure, register, send_email
from conveyor.errors import JobFailed

from ..helpers import wait_until
from ..smtp_server import Credentials, Handler, self_signed_certificate, server_tls_context, smtp_server

SENDER = "Conveyor <noreply@example.com>"


@pytest.fixture
def registry() -> Registry:
    fresh = Registry()
    register(fresh, max_attempts=3, backoff=Backoff.fixed(0.05))
    return fresh


@pytest.fixture(autouse=True)
def unconfigured() -> Iterator[None]:
    configure(None)
    yield
    configure(None)


@pytest.fixture
def server() -> Iterator[tuple[Handler, int]]:
    with smtp_server() as running:
        yield running


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def worker(start_worker: Callable[..., Any]) -> AsyncIterator[Any]:
    async with start_worker(concurrency=4, stage_interval=0.1) as running:
        yield running


def plain(port: int, **changes: Any) -> EmailSettings:
    return EmailSettings(
        **{"host": "127.0.0.1", "port": port, "security": "none", "sender": SENDER, **changes}
    )


async def dead_error(client: Conveyor, job_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with pytest.raises(JobFailed):
        await client.result(job_id, timeout=30)
    job = await client.get_job(job_id)
    assert job["state"] == "dead", job
    return job, job["errors"]


async def test_plain_text_mail_is_delivered_with_bcc_in_the_envelope_only(
    client: Conveyor, server: tuple[Handler, int], worker: Any
) -> None:
    handler, port = server
    configure(plain(port))
    job_id = await send_email(
        client,
        "ada@example.com",
        "Welcome",
        "Hello, Ada.\n",
        cc=["Grace <grace@example.com>"],
        bcc=["audit@example.com"],
        reply_to="support@example.com",
        headers={"X-Campaign": "welcome"},
    )
    result = await client.result(job_id, timeout=30)

    assert result["accepted"] == ["ada@example.com", "grace@example.com", "audit@example.com"]
    assert result["refused"] == {}
    assert result["reply"].startswith("250 2.0.0 Message accepted")
    [got] = handler.received
    assert got.sender == "noreply@example.com"
    assert got.tls is False  # security "none"
    assert got.recipients == ["ada@example.com", "grace@example.com", "audit@example.com"]
    message = got.message
    assert message["From"] == SENDER
    assert message["To"] == "ada@example.com"
    assert message["Cc"] == "Grace <grace@example.com>"
    assert message["Bcc"] is None  # Bcc recipients are in the envelope only
    assert message["Reply-To"] == "support@example.com"
    assert message["Subject"] == "Welcome"
    assert message["X-Campaign"] == "welcome"
    assert message["Date"] is not None
    # One Message-ID for every attempt of the job: made from its id.
    assert message["Message-ID"] == result["message_id"]
    assert result["message_id"].startswith(f"<conveyor.{job_id}.")
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "Hello, Ada.\n"


async def test_text_and_html_go_as_multipart_alternative(
    client: Conveyor, server: tuple[Handler, int], worker: Any
) -> None:
    handler, port = server
    configure(plain(port))
    job_id = await send_email(
        client,
        ["ada@example.com"],
        "Report ready",
        "Your report is ready.",
        "<p>Your <b>report</b> is ready.</p>",
    )
    await client.result(job_id, timeout=30)

    message = handler.received[0].message
    assert message.get_content_type() == "multipart/alternative"
    parts = [(p.get_content_type(), p.get_content().strip()) for p in message.iter_parts()]
    assert parts == [
        ("text/plain", "Your report is ready."),
        ("text/html", "<p>Your <b>report</b> is ready.</p>"),
    ]


async def test_html_only_mail(client: Conveyor, server: tuple[Handler, int], worker: Any) -> None:
    handler, port = server
    configure(plain(port))
    await client.result(await send_email(client, "ada@example.com", "Hi", html="<h1>Hi</h1>"), timeout=30)
    assert handler.received[0].message.get_content_type() == "text/html"


async def test_attachments_arrive_with_their_content_and_guessed_types(
    client: Conveyor, server: tuple[Handler, int], worker: Any, tmp_path: Path
) -> None:
    handler, port = server
    folder = tmp_path / "attachments"
    (folder / "2026").mkdir(parents=True)
    csv = b"id,total\n1,9.50\n2,12.00\n"
    binary = bytes(range(256)) * 40
    (folder / "2026" / "report.csv").write_bytes(csv)
    (folder / "blob.bin").write_bytes(binary)
    configure(plain(port, attachments_dir=str(folder)))
    job_id = await send_email(
        client,
        "ada@example.com",
        "Your export",
        "Attached.",
        "<p>Attached.</p>",
        attachments=["2026/report.csv", "blob.bin"],
    )
    await client.result(job_id, timeout=30)

    message = handler.received[0].message
    assert message.get_content_type() == "multipart/mixed"
    body = message.get_body(("html", "plain"))
    assert body is not None
    files = {
        part.get_filename(): (part.get_content_type(), part.get_payload(decode=True))
        for part in message.iter_attachments()
    }
    assert files == {"report.csv": ("text/csv", csv), "blob.bin": ("application/octet-stream", binary)}


async def test_a_4xx_reply_is_retried_and_the_next_attempt_delivers(
    client: Conveyor, server: tuple[Handler, int], worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handler, port = server
    handler.data_replies = ["451 4.7.1 Greylisted, please try again later"]
    configure(plain(port))
    with caplog.at_level(logging.WARNING, logger="conveyor.email"):
        job_id = await send_email(client, "ada@example.com", "Greylisted", "Hello")
        result = await client.result(job_id, timeout=30)

    job = await client.get_job(job_id)
    assert job["state"] == "completed"
    assert job["attempt"] == 2
    [error] = job["errors"]
    assert "451 4.7.1 Greylisted, please try again later" in error["error"]
    assert error["error"].startswith("TemporaryEmailFailure: SMTP server 127.0.0.1:")
    assert result["accepted"] == ["ada@example.com"]
    assert handler.data_commands == 2
    assert len(handler.received) == 1
    [line] = [r for r in caplog.records if getattr(r, "event", None) == "email_failed"]
    assert line.levelno == logging.WARNING
    assert (line.permanent, line.smtp_code, line.job_id, line.attempt) == (False, 451, job_id, 1)  # type: ignore[attr-defined]


async def test_a_5xx_reply_sends_the_job_to_the_dead_letter_table_at_once_with_the_reply(
    client: Conveyor, server: tuple[Handler, int], worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handler, port = server
    handler.data_replies = ["554 5.7.1 Message rejected as spam"]
    configure(plain(port))
    with caplog.at_level(logging.WARNING, logger="conveyor.email"):
        job, errors = await dead_error(client, await send_email(client, "ada@example.com", "Spam?", "Buy"))

    assert job["attempt"] == 1  # of 3: not retried
    [error] = errors
    assert error["error"].startswith("discarded: Discard: SMTP server 127.0.0.1:")
    assert "answered 554 5.7.1 Message rejected as spam to the message" in error["error"]
    assert handler.data_commands == 1
    assert handler.received == []
    [line] = [r for r in caplog.records if getattr(r, "event", None) == "email_failed"]
    assert line.levelno == logging.ERROR
    assert (line.permanent, line.smtp_code) == (True, 554)  # type: ignore[attr-defined]


async def test_every_recipient_refused_with_5xx_is_dead_and_some_refused_completes_with_them_reported(
    client: Conveyor, server: tuple[Handler, int], worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handler, port = server
    handler.refuse = {
        "gone@example.com": "550 5.1.1 No such user",
        "old@example.com": "550 5.1.1 Mailbox disabled",
    }
    configure(plain(port))

    _, [error] = await dead_error(
        client, await send_email(client, ["gone@example.com", "old@example.com"], "Hi", "Hello")
    )
    assert "refused every recipient: gone@example.com: 550 5.1.1 No such user; " in error["error"]
    assert "old@example.com: 550 5.1.1 Mailbox disabled" in error["error"]

    with caplog.at_level(logging.WARNING, logger="conveyor.email"):
        partly = await send_email(client, ["ada@example.com", "gone@example.com"], "Hi", "Hello")
        result = await client.result(partly, timeout=30)
    assert result["accepted"] == ["ada@example.com"]
    assert result["refused"] == {"gone@example.com": "550 5.1.1 No such user"}
    [line] = [r for r in caplog.records if getattr(r, "event", None) == "email_partly_refused"]
    assert (line.job_id, line.refused) == (partly, result["refused"])  # type: ignore[attr-defined]
    assert "refused 1 of 2 recipients: gone@example.com: 550 5.1.1 No such user" in line.getMessage()
    assert [r.recipients for r in handler.received] == [["ada@example.com"]]


async def test_a_recipient_refused_with_4xx_alone_is_retried(
    client: Conveyor, server: tuple[Handler, int], worker: Any
) -> None:
    handler, port = server
    handler.refuse = {"busy@example.com": "452 4.2.2 Mailbox full"}
    configure(plain(port))
    job, errors = await dead_error(client, await send_email(client, "busy@example.com", "Hi", "Hello"))
    assert job["attempt"] == 3  # every attempt used: a temporary refusal
    assert all("452 4.2.2 Mailbox full" in e["error"] for e in errors)


async def test_a_refused_connection_is_retried(client: Conveyor, worker: Any) -> None:
    # A port bound but not listening: connections to it are refused, and no one else gets it.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        configure(plain(closed.getsockname()[1]))
        job, errors = await dead_error(client, await send_email(client, "ada@example.com", "Hi", "Hello"))
    assert job["attempt"] == 3
    assert [e["attempt"] for e in errors] == [1, 2, 3]
    assert all("could not be reached or dropped the connection" in e["error"] for e in errors), errors
    assert all(e["error"].startswith("TemporaryEmailFailure") for e in errors)


async def test_a_server_that_never_answers_times_out_and_is_retried(client: Conveyor, worker: Any) -> None:
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)  # held open, never answered

    mute = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        configure(plain(mute.sockets[0].getsockname()[1], timeout=0.3))
        job, errors = await dead_error(client, await send_email(client, "ada@example.com", "Hi", "Hello"))
    finally:
        for writer in connections:
            writer.close()
        mute.close()
        await mute.wait_closed()
    assert job["attempt"] == 3
    assert len(connections) == 3
    assert all("did not answer within 0.3 s" in e["error"] for e in errors), errors


async def test_starttls_with_a_self_signed_certificate_trusted_through_the_ca_file(
    client: Conveyor, worker: Any, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    with smtp_server(tls_context=server_tls_context(cert, key)) as (handler, port):
        configure(plain(port, security="starttls", ca_file=str(cert)))
        await client.result(await send_email(client, "ada@example.com", "Hi", "Hello"), timeout=30)
        assert [r.tls for r in handler.received] == [True]

        # Without the CA file the certificate is not trusted: nothing is sent, and the job is
        # retried (a certificate can be renewed), the reason in its errors.
        configure(plain(port, security="starttls"))
        _, errors = await dead_error(client, await send_email(client, "ada@example.com", "Hi", "Hello"))
        assert len(errors) == 3
        assert all("CERTIFICATE_VERIFY_FAILED" in e["error"] for e in errors), errors
        assert len(handler.received) == 1


async def test_tls_from_the_first_byte(client: Conveyor, worker: Any, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    with smtp_server(tls_context=server_tls_context(cert, key), implicit_tls=True) as (handler, port):
        configure(plain(port, security="tls", ca_file=str(cert)))
        await client.result(await send_email(client, "ada@example.com", "Hi", "Hello"), timeout=30)
        assert [r.tls for r in handler.received] == [True]


async def test_starttls_refused_by_a_server_without_it_is_permanent(
    client: Conveyor, server: tuple[Handler, int], worker: Any
) -> None:
    handler, port = server
    configure(plain(port, security="starttls"))
    _, [error] = await dead_error(client, await send_email(client, "ada@example.com", "Hi", "Hello"))
    assert "STARTTLS extension not supported" in error["error"]
    assert handler.received == []


async def test_auth_with_credentials_from_the_environment_and_a_wrong_password_is_permanent(
    client: Conveyor,
    worker: Any,
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cert, key = certificate
    secret = "correct horse battery staple"
    with smtp_server(
        tls_context=server_tls_context(cert, key), credentials=Credentials("mailer", secret)
    ) as (handler, port):
        for name, value in {
            "CONVEYOR_SMTP_HOST": "127.0.0.1",
            "CONVEYOR_SMTP_PORT": str(port),
            "CONVEYOR_SMTP_SECURITY": "starttls",
            "CONVEYOR_SMTP_USERNAME": "mailer",
            "CONVEYOR_SMTP_PASSWORD": secret,
            "CONVEYOR_SMTP_CA_FILE": str(cert),
            "CONVEYOR_SMTP_FROM": SENDER,
        }.items():
            monkeypatch.setenv(name, value)
        result = await client.result(await send_email(client, "ada@example.com", "Hi", "Hello"), timeout=30)
        assert "password" not in str(result)
        assert [(r.login, r.tls) for r in handler.received] == [("mailer", True)]

        wrong = "tr0ub4dor&3"
        monkeypatch.setenv("CONVEYOR_SMTP_PASSWORD", wrong)
        with caplog.at_level(logging.DEBUG):
            job, [error] = await dead_error(
                client, await send_email(client, "ada@example.com", "Hi", "Hello")
            )
        assert job["attempt"] == 1
        assert "answered 535 5.7.8 Authentication credentials invalid to the login" in error["error"]
        for text in (str(job), caplog.text):
            assert wrong not in text
            assert secret not in text
        assert len(handler.received) == 1


async def test_header_injection_is_refused_when_enqueued_and_when_run(
    client: Conveyor, server: tuple[Handler, int], worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handler, port = server
    configure(plain(port))
    with pytest.raises(ArgumentsError, match="line break"):
        await send_email(client, "ada@example.com", "Hi\r\nBcc: everyone@example.com", "Hello")
    with pytest.raises(ArgumentsError, match="header injection refused"):
        await send_email(client, "ada@example.com", "Hi", "Hello", headers={"X-Tag": "a\nBcc: x@example.com"})
    with pytest.raises(ArgumentsError, match="use the 'bcc' argument"):
        await send_email(client, "ada@example.com", "Hi", "Hello", headers={"Bcc": "x@example.com"})
    with pytest.raises(ArgumentsError, match="not one e-mail address"):
        await send_email(client, "ada@example.com, eve@example.com", "Hi", "Hello")
    with pytest.raises(ArgumentsError, match="no body"):
        await send_email(client, "ada@example.com", "Hi")

    # Enqueued by name, past the helper's checks: the worker refuses it, without retries.
    job_id = await client.enqueue(
        SEND_TASK,
        {"to": ["ada@example.com"], "subject": "Hi", "text": "x", "headers": {"X-A": "1\r\nBcc: e@x.org"}},
    )
    with caplog.at_level(logging.WARNING, logger="conveyor.email"):
        job, [error] = await dead_error(client, job_id)
    assert job["attempt"] == 1
    assert "header 'X-A' has a line break in its value (header injection refused)" in error["error"]
    assert handler.data_commands == 0
    [line] = [r for r in caplog.records if getattr(r, "event", None) == "email_failed"]
    assert (line.levelno, line.permanent, line.smtp_server, line.job_id) == (
        logging.ERROR,
        True,
        None,
        job_id,
    )  # type: ignore[attr-defined]


async def test_attachment_paths_out_of_their_folder_are_refused(
    client: Conveyor, server: tuple[Handler, int], worker: Any, tmp_path: Path
) -> None:
    handler, port = server
    folder = tmp_path / "attachments"
    folder.mkdir()
    (tmp_path / "secret.txt").write_text("the database password")
    (folder / "inside.txt").write_text("fine")
    os.symlink(tmp_path / "secret.txt", folder / "link.txt")
    os.symlink(folder / "inside.txt", folder / "inner-link.txt")  # a link that stays inside is fine
    configure(plain(port, attachments_dir=str(folder)))

    for path, why in [
        ("../secret.txt", "leaves the attachments folder"),
        (str(tmp_path / "secret.txt"), "is absolute"),
    ]:
        with pytest.raises(ArgumentsError, match=why):
            await send_email(client, "ada@example.com", "Hi", "Hello", attachments=[path])

    cases = {
        "../secret.txt": "leaves the attachments folder ('..' is refused)",
        "/etc/passwd": "is absolute: give a path relative to the attachments folder",
        "link.txt": "is a link to a file outside the attachments folder (refused)",
        "missing.txt": "does not exist in the attachments folder",
    }
    for path, why in cases.items():
        args = {"to": ["ada@example.com"], "subject": "Hi", "text": "x", "attachments": [path]}
        job, [error] = await dead_error(client, await client.enqueue(SEND_TASK, args))
        assert job["attempt"] == 1
        assert why in error["error"], (path, error["error"])
    assert handler.data_commands == 0

    await client.result(
        await send_email(client, "ada@example.com", "Hi", "Hello", attachments=["inner-link.txt"]), timeout=30
    )
    [part] = handler.received[0].message.iter_attachments()
    assert part.get_payload(decode=True) == b"fine"


async def test_attachments_over_the_size_limit_are_refused(
    client: Conveyor, server: tuple[Handler, int], worker: Any, tmp_path: Path
) -> None:
    handler, port = server
    (tmp_path / "a.bin").write_bytes(b"x" * 600)
    (tmp_path / "b.bin").write_bytes(b"y" * 600)
    configure(plain(port, attachments_dir=str(tmp_path), max_attachment_bytes=1000))
    _, [error] = await dead_error(
        client, await send_email(client, "ada@example.com", "Hi", "Hello", attachments=["a.bin", "b.bin"])
    )
    assert "attachments add up to more than the 1000 byte limit (at 'b.bin')" in error["error"]
    assert handler.data_commands == 0


async def test_a_job_without_a_sender_and_no_default_is_retried_until_the_worker_is_configured(
    client: Conveyor, server: tuple[Handler, int], worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handler, port = server
    configure(plain(port, sender=None))
    with caplog.at_level(logging.WARNING, logger="conveyor.email"):
        job, errors = await dead_error(client, await send_email(client, "ada@example.com", "Hi", "Hello"))
    assert job["attempt"] == 3
    assert "set CONVEYOR_SMTP_FROM or pass sender" in errors[0]["error"]
    lines = [r for r in caplog.records if getattr(r, "event", None) == "email_failed"]
    assert [(r.levelno, r.permanent, r.attempt) for r in lines] == [  # type: ignore[attr-defined]
        (logging.WARNING, False, 1),
        (logging.WARNING, False, 2),
        (logging.WARNING, False, 3),
    ]

    configure(plain(port, sender=None))
    await client.result(
        await send_email(client, "ada@example.com", "Hi", "Hello", sender="billing@example.com"), timeout=30
    )
    assert handler.received[0].sender == "billing@example.com"


async def test_send_email_inside_the_callers_transaction(
    client: Conveyor, server: tuple[Handler, int], worker: Any, database_url: str
) -> None:
    handler, port = server
    configure(plain(port))
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        async with conn.transaction(force_rollback=True):
            rolled_back = await send_email(client, "ada@example.com", "Never", "Rolled back", conn=conn)
        async with conn.transaction():
            committed = await send_email(client, "ada@example.com", "Order placed", "Thanks", conn=conn)
    await client.result(committed, timeout=30)
    assert [r.message["Subject"] for r in handler.received] == ["Order placed"]
    with pytest.raises(Exception, match="no job"):
        await client.get_job(rolled_back)


def test_the_task_is_registered_on_import_in_the_default_registry() -> None:
    from conveyor import default_registry

    task = default_registry.get(SEND_TASK)
    assert task is not None
    assert task.func is contrib_email.send
    assert (task.queue, task.max_attempts) == ("emails", 8)
    assert task.backoff == contrib_email.EMAIL_BACKOFF


async def test_a_rate_limit_on_the_emails_queue_holds_mail_back_without_using_attempts(
    client: Conveyor, server: tuple[Handler, int], registry: Registry, start_worker: Callable[..., Any]
) -> None:
    handler, port = server
    configure(plain(port))
    registry.queue("emails", rate="2/1m")
    ids = [await send_email(client, f"user{i}@example.com", "Newsletter", "News") for i in range(3)]

    async def states() -> list[tuple[str, int]]:
        return [((job := await client.get_job(i))["state"], job["attempt"]) for i in ids]

    async def two_completed() -> bool:
        return [state for state, _ in await states()].count("completed") == 2

    async with start_worker(concurrency=4):
        await wait_until(two_completed, within=30)
        # The window holds the third for a minute, far longer than this test: it waits unstarted.
        now = await states()
        [limits] = await client.queue_limits("emails")
    assert sorted(now) == [("available", 0), ("completed", 1), ("completed", 1)], now
    assert limits.window_starts == 2
    assert len(handler.received) == 2
