"""The webhook task with a real worker, real PostgreSQL and real HTTP servers on loopback.

The servers listen on 127.0.0.1, so these tests allow exactly 127.0.0.1/32; the guard's
refusals are tested against other loopback addresses (127.0.0.2, ::1) and names.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from conveyor import ArgumentsError, Backoff, Conveyor, FrozenClock, Registry
from conveyor.contrib import webhooks
from conveyor.contrib.webhooks import SEND_TASK, WebhookSettings, send_webhook, verify

from ..helpers import DB, wait_until
from ..http_receiver import Receiver, Reply, running_receiver

OLD_SECRET = "whsec_" + base64.b64encode(b"the old key, 32 bytes long......").decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"the new key, also 32 bytes long.").decode()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as server:
        yield server


@pytest.fixture(autouse=True)
def settings() -> Iterator[WebhookSettings]:
    chosen = webhooks.configure(
        WebhookSettings(secrets={"acme": NEW_SECRET}, allow_private_targets=["127.0.0.1/32"], timeout=5)
    )
    yield chosen
    webhooks.configure(None)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def client(database_url: str, schema: str, registry: Registry, clock: FrozenClock) -> Any:
    webhooks.register(registry, max_attempts=3, backoff=Backoff.fixed(2))
    async with Conveyor(database_url, schema=schema, registry=registry, clock=clock) as conveyor:
        yield conveyor


def finished(db: DB, job_id: int) -> bool:
    return bool(db.one("select count(*) from {schema}.job_history where id = %s", [job_id]))


def dead(db: DB, job_id: int) -> bool:
    return bool(db.one("select count(*) from {schema}.dead_jobs where id = %s", [job_id]))


def waiting_after(db: DB, job_id: int, attempt: int) -> bool:
    rows = db.all("select state, attempt from {schema}.jobs where id = %s", [job_id])
    return rows == [("scheduled", attempt)]


def seconds_until_next_attempt(db: DB, job_id: int, clock: FrozenClock) -> float:
    run_at = db.one("select run_at from {schema}.jobs where id = %s", [job_id])
    return float((run_at - clock.now()).total_seconds())


def last_error(db: DB, job_id: int, dead_letter: bool = False) -> str:
    if dead_letter:
        errors = db.one("select errors from {schema}.dead_jobs where id = %s", [job_id])
    else:
        errors = db.one("select errors from {schema}.jobs where id = %s", [job_id])
    return str(errors[-1]["error"])


def no_secret_in(*texts: str) -> None:
    for secret in (OLD_SECRET, NEW_SECRET):
        key = secret.removeprefix("whsec_")
        for text in texts:
            assert key not in text
            assert base64.b64decode(key).decode() not in text


async def test_delivers_a_signed_event_that_the_receiver_verifies(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any
) -> None:
    payload = {"invoice": 42, "total": "12.50", "note": "café ✓"}
    job_id = await send_webhook(
        client, receiver.url(), payload, "acme", event="invoice.paid", headers={"X-Tenant": "t1"}
    )
    async with start_worker(clock=client.clock):
        await wait_until(lambda: finished(db, job_id))

    [request] = receiver.to("/hook")
    assert request.method == "POST"
    assert verify(NEW_SECRET, request.headers, request.body) == f"msg_{job_id}"
    body = json.loads(request.body)
    assert body["type"] == "invoice.paid"
    assert body["data"] == payload
    enqueued = db.one("select enqueued_at from {schema}.job_history where id = %s", [job_id])
    assert datetime.fromisoformat(body["timestamp"]) == enqueued
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-tenant"] == "t1"
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert request.headers["user-agent"].startswith("Conveyor-Webhooks/")
    assert request.headers["webhook-signature"].count("v1,") == 1

    result = db.one("select result from {schema}.job_history where id = %s", [job_id])
    assert result["status"] == 200
    assert result["response_excerpt"] == "ok"
    assert result["url"] == receiver.url()
    assert result["attempt"] == 1
    assert result["message_id"] == f"msg_{job_id}"
    assert 0 < result["elapsed_ms"] < 5000
    no_secret_in(
        json.dumps(result),
        json.dumps(db.one("select args from {schema}.job_history where id = %s", [job_id])),
    )


async def test_without_an_event_the_payload_is_the_body_and_the_id_can_be_given(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any
) -> None:
    job_id = await send_webhook(client, receiver.url(), [1, 2, 3], "ACME", message_id="evt_7f3a")
    async with start_worker(clock=client.clock):
        await wait_until(lambda: finished(db, job_id))
    [request] = receiver.to("/hook")
    assert request.body == b"[1,2,3]"
    assert verify(NEW_SECRET, request.headers, request.body) == "evt_7f3a"


async def test_rotation_signs_with_both_secrets_and_a_receiver_knowing_either_accepts(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any
) -> None:
    webhooks.configure(secrets={"acme": f"{NEW_SECRET} {OLD_SECRET}"}, allow_private_targets=["127.0.0.1/32"])
    job_id = await send_webhook(client, receiver.url(), {"n": 1}, "acme")
    async with start_worker(clock=client.clock):
        await wait_until(lambda: finished(db, job_id))
    [request] = receiver.to("/hook")
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verify(OLD_SECRET, request.headers, request.body) == f"msg_{job_id}"
    assert verify(NEW_SECRET, request.headers, request.body) == f"msg_{job_id}"
    stranger = "whsec_" + base64.b64encode(b"s" * 32).decode()
    with pytest.raises(webhooks.WebhookVerificationError):
        verify(stranger, request.headers, request.body)


async def test_a_500_is_retried_with_the_same_webhook_id_then_delivered(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any, clock: FrozenClock
) -> None:
    receiver.script("/hook", Reply(500, b"database is down"))
    job_id = await send_webhook(client, receiver.url(), {"n": 1}, "acme")
    async with start_worker(clock=clock) as worker:
        await wait_until(lambda: waiting_after(db, job_id, 1))
        assert 1.8 <= seconds_until_next_attempt(db, job_id, clock) <= 2.2  # the backoff
        error = last_error(db, job_id)
        assert error.startswith(f"WebhookDeliveryError: HTTP 500 from {receiver.url()}: 'database is down'")
        clock.advance(2.5)
        worker.wake()
        await wait_until(lambda: finished(db, job_id))
    first, second = receiver.to("/hook")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{job_id}"
    assert first.body == second.body
    for request in (first, second):
        assert verify(NEW_SECRET, request.headers, request.body) == f"msg_{job_id}"
    assert db.one("select result from {schema}.job_history where id = %s", [job_id])["attempt"] == 2
    no_secret_in(json.dumps(db.one("select errors from {schema}.job_history where id = %s", [job_id])))


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_in_seconds_sets_the_next_attempt(
    status: int, client: Conveyor, receiver: Receiver, db: DB, start_worker: Any, clock: FrozenClock
) -> None:
    receiver.script("/hook", Reply(status, b"slow down", {"Retry-After": "120"}))
    job_id = await send_webhook(client, receiver.url(), {"n": 1}, "acme")
    async with start_worker(clock=clock) as worker:
        await wait_until(lambda: waiting_after(db, job_id, 1))
        assert seconds_until_next_attempt(db, job_id, clock) == 120  # not the 2 s backoff
        assert f"HTTP {status} from" in last_error(db, job_id)
        assert "Retry-After asks for 120 s" in last_error(db, job_id)
        clock.advance(119)
        worker.wake()
        passes = worker.maintenance.passes
        await wait_until(lambda: worker.maintenance.passes > passes + 1)
        assert len(receiver.to("/hook")) == 1  # not before its time
        clock.advance(1)
        worker.wake()
        await wait_until(lambda: finished(db, job_id))
    assert len(receiver.to("/hook")) == 2


async def test_retry_after_as_an_http_date_and_capped_by_the_settings(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any, clock: FrozenClock
) -> None:
    in_ten_minutes = format_datetime(datetime.now(UTC) + timedelta(minutes=10), usegmt=True)
    receiver.script(
        "/hook",
        Reply(429, b"", {"Retry-After": in_ten_minutes}),
        Reply(429, b"", {"Retry-After": "999999"}),
    )
    webhooks.configure(
        secrets={"acme": NEW_SECRET}, allow_private_targets=["127.0.0.1/32"], max_retry_after=3600
    )
    job_id = await send_webhook(client, receiver.url(), {"n": 1}, "acme")
    async with start_worker(clock=clock) as worker:
        await wait_until(lambda: waiting_after(db, job_id, 1))
        assert (
            570 <= seconds_until_next_attempt(db, job_id, clock) <= 600
        )  # the date's whole seconds, less the test's time
        clock.advance(600)
        worker.wake()
        await wait_until(lambda: waiting_after(db, job_id, 2))
        assert seconds_until_next_attempt(db, job_id, clock) == 3600  # cut to max_retry_after


async def test_a_404_goes_to_the_dead_letter_table_at_once(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any
) -> None:
    receiver.script("/hook", Reply(404, b"no such hook"))
    job_id = await send_webhook(client, receiver.url(), {"n": 1}, "acme")
    async with start_worker(clock=client.clock):
        await wait_until(lambda: dead(db, job_id))
    assert db.one("select attempt from {schema}.dead_jobs where id = %s", [job_id]) == 1
    assert len(receiver.to("/hook")) == 1
    error = last_error(db, job_id, dead_letter=True)
    assert error.startswith(f"discarded: Discard: HTTP 404 from {receiver.url()}: 'no such hook' (after ")


async def test_a_redirect_that_keeps_the_method_is_followed_and_signed_alike(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any
) -> None:
    receiver.script("/old", Reply(308, b"", {"Location": "/new?v=2"}))
    job_id = await send_webhook(
        client, receiver.url("/old"), {"n": 1}, "acme", headers={"Authorization": "Bearer t"}
    )
    async with start_worker(clock=client.clock):
        await wait_until(lambda: finished(db, job_id))
    [old] = receiver.to("/old")
    [new] = receiver.to("/new?v=2")
    assert new.method == "POST"
    assert new.body == old.body
    assert new.headers["authorization"] == "Bearer t"  # the same origin keeps the job's headers
    assert verify(NEW_SECRET, new.headers, new.body) == f"msg_{job_id}"
    assert db.one("select result from {schema}.job_history where id = %s", [job_id])["url"] == receiver.url(
        "/new?v=2"
    )


async def test_a_redirect_to_another_origin_does_not_carry_the_jobs_headers(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any
) -> None:
    with running_receiver() as other:
        receiver.script("/hook", Reply(307, b"", {"Location": other.url("/elsewhere")}))
        job_id = await send_webhook(
            client, receiver.url(), {"n": 1}, "acme", headers={"Authorization": "Bearer t"}
        )
        async with start_worker(clock=client.clock):
            await wait_until(lambda: finished(db, job_id))
        [moved] = other.to("/elsewhere")
    assert "authorization" not in moved.headers
    assert verify(NEW_SECRET, moved.headers, moved.body) == f"msg_{job_id}"


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.2:{port}/hook",  # loopback, but not the allowed 127.0.0.1
        "http://[::1]:{port}/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/",
    ],
)
async def test_a_redirect_to_a_private_address_is_refused_and_dead(
    location: str, client: Conveyor, receiver: Receiver, db: DB, start_worker: Any
) -> None:
    receiver.script("/hook", Reply(307, b"", {"Location": location.format(port=receiver.port)}))
    job_id = await send_webhook(client, receiver.url(), {"n": 1}, "acme")
    async with start_worker(clock=client.clock):
        await wait_until(lambda: dead(db, job_id))
    error = last_error(db, job_id, dead_letter=True)
    assert "refused to send to" in error
    assert "not a public address" in error
    assert len(receiver.requests) == 1  # only the first hop was sent


async def test_private_targets_are_refused_unless_allowed(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any
) -> None:
    webhooks.configure(secrets={"acme": NEW_SECRET})  # the default: public addresses only
    refused = await send_webhook(client, receiver.url(), {"n": 1}, "acme")
    async with start_worker(clock=client.clock):
        await wait_until(lambda: dead(db, refused))
    assert "127.0.0.1 is not a public address (loopback)" in last_error(db, refused, dead_letter=True)
    assert receiver.requests == []

    webhooks.configure(secrets={"acme": NEW_SECRET}, allow_private_targets=True)
    allowed = await send_webhook(client, f"http://localhost:{receiver.port}/hook", {"n": 2}, "acme")
    async with start_worker(clock=client.clock):
        await wait_until(lambda: finished(db, allowed))
    assert len(receiver.requests) == 1


async def test_301_and_too_many_redirects_are_dead(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any
) -> None:
    receiver.script("/moved", Reply(301, b"", {"Location": "/new"}))
    receiver.script("/loop", *[Reply(307, b"", {"Location": "/loop"})] * 5)
    moved = await send_webhook(client, receiver.url("/moved"), {"n": 1}, "acme")
    looping = await send_webhook(client, receiver.url("/loop"), {"n": 1}, "acme")
    async with start_worker(clock=client.clock):
        await wait_until(lambda: dead(db, moved) and dead(db, looping))
    assert "redirected to /new, which a webhook does not follow: update the URL" in last_error(
        db, moved, "dead_jobs"
    )
    assert "more than 3 redirects" in last_error(db, looping, dead_letter=True)
    assert len(receiver.to("/loop")) == 4
    assert receiver.to("/new") == []


async def test_a_timeout_is_retried(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any, clock: FrozenClock
) -> None:
    webhooks.configure(secrets={"acme": NEW_SECRET}, allow_private_targets=["127.0.0.1/32"], timeout=0.5)
    receiver.script("/hook", Reply(hang=True))
    job_id = await send_webhook(client, receiver.url(), {"n": 1}, "acme")
    async with start_worker(clock=clock) as worker:
        await wait_until(lambda: waiting_after(db, job_id, 1))
        assert f"no answer from {receiver.url()} within 0.5 s" in last_error(db, job_id)
        receiver.release()
        clock.advance(3)
        worker.wake()
        await wait_until(lambda: finished(db, job_id))
    assert len(receiver.to("/hook")) == 2


async def test_a_2xx_whose_body_stalls_is_delivered_not_sent_again(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any
) -> None:
    # The receiver said 200: it has the webhook. A body that never ends must not turn that
    # into a failed attempt (and a second delivery); the excerpt is what arrived in time.
    webhooks.configure(secrets={"acme": NEW_SECRET}, allow_private_targets=["127.0.0.1/32"], timeout=0.5)
    receiver.script("/hook", Reply(200, b"accepted, processing" + b"." * 20, stall_body=True))
    job_id = await send_webhook(client, receiver.url(), {"n": 1}, "acme")
    async with start_worker(clock=client.clock):
        await wait_until(lambda: finished(db, job_id))
    result = db.one("select result from {schema}.job_history where id = %s", [job_id])
    assert (result["status"], result["attempt"]) == (200, 1)
    assert result["response_excerpt"] == "accepted, processing"
    assert len(receiver.to("/hook")) == 1


async def test_a_refused_connection_is_retried(
    client: Conveyor, db: DB, start_worker: Any, clock: FrozenClock
) -> None:
    # A port bound but not listening: connections to it are refused, and no other server can
    # take it while the test runs.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{taken.getsockname()[1]}/hook"
        job_id = await send_webhook(client, url, {"n": 1}, "acme")
        async with start_worker(clock=clock):
            await wait_until(lambda: waiting_after(db, job_id, 1))
    assert last_error(db, job_id).startswith(f"WebhookDeliveryError: ConnectError posting to {url}")


async def test_the_response_excerpt_is_bounded_and_decoded_safely(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any
) -> None:
    body = ("é" * 3000).encode() + b"\x00\xff"
    receiver.script("/hook", Reply(200, body, {"Content-Type": "text/plain; charset=utf-8"}))
    job_id = await send_webhook(client, receiver.url(), {"n": 1}, "acme")
    async with start_worker(clock=client.clock):
        await wait_until(lambda: finished(db, job_id))
    excerpt = db.one("select result from {schema}.job_history where id = %s", [job_id])["response_excerpt"]
    assert excerpt == "é" * 512 + "…"  # 1024 bytes of two-byte characters, and a mark


async def test_bad_arguments_are_refused_before_enqueue_and_dead_when_enqueued_anyway(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"headers": {"X-Evil": "a\r\nInjected: yes"}}, "header injection refused"),
        ({"headers": {"Webhook-Signature": "v1,forged"}}, "is set by the webhook task"),
        ({"headers": {"Content-Type": "text/plain"}}, "is set by the webhook task"),
        ({"headers": {"Host": "internal"}}, "is set by the webhook task"),
        ({"headers": {"Bad Name": "x"}}, "not a valid HTTP field name"),
        ({"headers": {"X-Note": "café"}}, "must be ASCII"),
        ({"secret": "no such/name"}, "secret name 'no such/name' is not allowed"),
        ({"secret": NEW_SECRET}, "the NAME of a secret"),
        ({"message_id": "msg.1"}, "no dot"),
        ({"url": "ftp://example.com/"}, "not http or https"),
        ({"url": "https://u:p@example.com/"}, "carries credentials"),
    ]
    ids = []
    for change, message in cases:
        args = {"url": receiver.url(), "payload": {"n": 1}, "secret": "acme", **change}
        with pytest.raises(ArgumentsError, match=message):
            webhooks.webhook_args(**args)
        ids.append((await client.enqueue(SEND_TASK, args), message))  # as SQL or another language would
    async with start_worker(clock=client.clock):
        await wait_until(lambda: all(dead(db, job_id) for job_id, _ in ids))
    for job_id, message in ids:
        assert message in last_error(db, job_id, dead_letter=True)
        assert db.one("select attempt from {schema}.dead_jobs where id = %s", [job_id]) == 1
    assert receiver.requests == []


async def test_an_unknown_secret_is_dead_at_once_with_a_clear_message(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any
) -> None:
    job_id = await send_webhook(client, receiver.url(), {"n": 1}, "nope")
    async with start_worker(clock=client.clock):
        await wait_until(lambda: dead(db, job_id))
    error = last_error(db, job_id, dead_letter=True)
    assert "no webhook secret named 'nope' in this worker: set CONVEYOR_WEBHOOK_SECRET_NOPE" in error
    assert receiver.requests == []


async def test_secrets_come_from_the_environment_by_name(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_WEBHOOK_SECRET_BILLING", f" {OLD_SECRET}  {NEW_SECRET} ")
    monkeypatch.setenv("CONVEYOR_WEBHOOK_ALLOW_PRIVATE", "127.0.0.1/32, ::1")
    webhooks.configure(None)  # the environment's settings
    job_id = await send_webhook(client, receiver.url(), {"n": 1}, "billing")
    async with start_worker(clock=client.clock):
        await wait_until(lambda: finished(db, job_id))
    [request] = receiver.to("/hook")
    assert len(request.headers["webhook-signature"].split()) == 2
    assert verify(OLD_SECRET, request.headers, request.body) == f"msg_{job_id}"


async def test_failures_are_logged_once_each_without_secrets(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script("/hook?token=abc", Reply(410, b"gone for good"))
    caplog.set_level(logging.INFO, logger="conveyor")
    job_id = await send_webhook(client, f"{receiver.url()}?token=abc", {"n": 1}, "acme")
    async with start_worker(clock=client.clock):
        await wait_until(lambda: dead(db, job_id))
    [record] = [r for r in caplog.records if r.name == "conveyor.webhooks"]
    assert record.levelno == logging.ERROR
    fields = record.__dict__
    assert fields["event"] == "webhook_failed"
    assert fields["status"] == 410
    assert fields["permanent"] is True
    assert fields["target"] == f"http://127.0.0.1:{receiver.port}"  # no path, no query
    assert fields["job_id"] == job_id
    assert "no longer takes these webhooks" in last_error(db, job_id, dead_letter=True)
    no_secret_in(*(r.getMessage() for r in caplog.records), *(str(r.__dict__) for r in caplog.records))


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for ``name`` (DNS name only, no IP address in it) and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName=DNS:{name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_to_a_pinned_address_checks_the_certificate_against_the_host_name(
    client: Conveyor, db: DB, start_worker: Any, clock: FrozenClock, tmp_path: Path
) -> None:
    # The request connects to the vetted address (127.0.0.1), yet the certificate, made for
    # the name "localhost" only, must verify: TLS's server name is the URL's host.
    cert, key = self_signed(tmp_path, "localhost")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    webhooks.configure(
        secrets={"acme": NEW_SECRET}, allow_private_targets=["127.0.0.1/32", "::1/128"], ca_file=str(cert)
    )
    with running_receiver(tls=tls) as server:
        url = f"https://localhost:{server.port}/hook"
        job_id = await send_webhook(client, url, {"n": 1}, "acme")
        async with start_worker(clock=clock):
            await wait_until(lambda: finished(db, job_id))
        [request] = server.to("/hook")
    assert request.headers["host"] == f"localhost:{server.port}"
    assert verify(NEW_SECRET, request.headers, request.body) == f"msg_{job_id}"
    assert db.one("select result from {schema}.job_history where id = %s", [job_id])["url"] == url

    # A certificate for another name: no delivery, retried (it may be renewed meanwhile).
    other_cert, other_key = self_signed(tmp_path, "other.example")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(other_cert, other_key)
    webhooks.configure(
        secrets={"acme": NEW_SECRET},
        allow_private_targets=["127.0.0.1/32", "::1/128"],
        ca_file=str(other_cert),
    )
    with running_receiver(tls=tls) as server:
        job_id = await send_webhook(client, f"https://localhost:{server.port}/hook", {"n": 1}, "acme")
        async with start_worker(clock=clock):
            await wait_until(lambda: waiting_after(db, job_id, 1))
        assert server.requests == []
    assert "CERTIFICATE_VERIFY_FAILED" in last_error(db, job_id)


async def test_the_connection_goes_to_the_vetted_address_not_to_a_new_lookup(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A name only our resolver knows, answered once: were the name looked up again when
    # connecting (where a rebinding DNS server would answer something else), the system's
    # resolver would fail on it. The receiver sees the URL's name in Host.
    from conveyor.contrib.webhooks import targets

    lookups: list[str] = []

    async def resolve_once(host: str, port: int) -> list[targets.IPAddress]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(targets, "resolve", resolve_once)
    url = f"http://rebinding.invalid:{receiver.port}/hook"
    result = await webhooks.send(url, {"n": 1}, "acme")
    assert lookups == ["rebinding.invalid"]
    assert result["status"] == 200
    assert result["url"] == url
    [request] = receiver.to("/hook")
    assert request.headers["host"] == f"rebinding.invalid:{receiver.port}"
    assert verify(NEW_SECRET, request.headers, request.body) == result["message_id"]


async def test_a_retry_after_date_with_an_absurd_offset_is_ignored_not_a_crash(
    client: Conveyor, receiver: Receiver, db: DB, start_worker: Any, clock: FrozenClock
) -> None:
    # The offset overflows the date parser (OverflowError, not ValueError): the answer is
    # still a 503, retried with the backoff, its status in the error.
    receiver.script(
        "/hook", Reply(503, b"busy", {"Retry-After": "Mon, 01 Jan 2026 00:00:00 +99999999999999999"})
    )
    job_id = await send_webhook(client, receiver.url(), {"n": 1}, "acme")
    async with start_worker(clock=clock):
        await wait_until(lambda: waiting_after(db, job_id, 1))
        assert f"HTTP 503 from {receiver.url()}" in last_error(db, job_id)
        assert seconds_until_next_attempt(db, job_id, clock) == 2  # the task's backoff
