"""The ``conveyor.webhooks.send`` task: one signed POST per job, judged by its answer.

How an attempt ends (docs/webhooks.md):

- ``2xx``: delivered; the job's result is ``{"status", "elapsed_ms", "response_excerpt",
  "url", "attempt", "message_id", "redirects"}`` (the excerpt: the first KiB of the
  response, as text; the URL: the last one, after redirects);
- ``408``, ``429``, ``5xx``, a timeout, a refused or dropped connection, a host that does not
  resolve: retried with the task's backoff, or no sooner than the answer's ``Retry-After``
  (seconds or an HTTP date, capped by ``max_retry_after``) when it has one (``RetryIn``);
- any other ``4xx``, a redirect that is not followed (301, 302, 303, or more than
  ``max_redirects``), a target the guard refuses, bad arguments, a secret this worker does not
  have: ``Discard``, the job goes to the dead-letter table at once with the reason.

Every failure is one structured line of the ``conveyor.webhooks`` logger (``event``:
``webhook_failed``, with ``permanent``, ``status``, ``target`` (scheme, host and port only:
a URL's path may hold a token), ``elapsed_ms``, ``retry_after`` and the job's id and
attempt), besides the worker's own line about the retry or the dead letter.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn

import httpx

from ...backoff import Backoff
from ...errors import ArgumentsError, ConfigurationError, Discard, RetryIn
from ...queue.client import Conveyor
from ...queue.context import JobContext
from ...tasks import Registry, Task, build_task
from .arguments import BadWebhook, build_body, check_args
from .delivery import FOLLOWED_REDIRECTS, Answer, deliver
from .settings import WebhookSettings, settings
from .signing import signature_header
from .targets import TargetRefused, UnresolvableHost, authority

SEND_TASK = "conveyor.webhooks.send"
WEBHOOK_QUEUE = "webhooks"
# 5 s, 20 s, 80 s, 5 min, 21 min, 85 min, then every 6 h: ten attempts span about 20 hours,
# in the spirit of the spec's schedule (retries spread over a day or more, with jitter).
WEBHOOK_BACKOFF = Backoff(base=5.0, factor=4.0, cap=6 * 3600.0, jitter=0.1)
WEBHOOK_MAX_ATTEMPTS = 10
_QUOTED_IN_ERRORS = 300  # characters of the excerpt an error message repeats
_RETRIED_STATUSES = frozenset({408, 429})  # besides 5xx

log = logging.getLogger("conveyor.webhooks")


class WebhookDeliveryError(Exception):
    """The receiver or the network failed in a way a later attempt may not: the job is retried
    with the task's backoff."""


async def send(
    url: str,
    payload: Any,
    secret: str,
    event: str | None = None,
    headers: dict[str, str] | None = None,
    message_id: str | None = None,
    ctx: JobContext | None = None,
) -> dict[str, Any]:
    """POST ``payload`` as JSON to ``url``, signed with every key of the secret named
    ``secret`` (Standard Webhooks). ``event``: sent as the spec's envelope ``{"type": event,
    "timestamp": <when the job was enqueued>, "data": payload}``; without it the payload is the
    body as it is. ``headers``: extra request headers (not ``webhook-*``, ``Host``,
    ``Content-Type`` nor the framing's own), sent only to the URL's own origin.
    ``message_id``: the ``webhook-id``, the receiver's key to drop duplicates; by default
    ``msg_<job id>``, the same on every attempt."""
    started = time.perf_counter()
    try:
        target = check_args(url, payload, secret, event, headers, message_id)
    except (BadWebhook, TargetRefused) as exc:
        _fail(ctx, None, started, str(exc), permanent=True, sent=False)
    config = settings()  # a ConfigurationError here is retried: the job is fine, the worker is not
    try:
        keys = config.keys(secret)
        body = build_body(payload, event, ctx.enqueued_at if ctx is not None else None)
    except (ConfigurationError, BadWebhook) as exc:  # a secret's message shows none of it
        _fail(ctx, target, started, str(exc), permanent=True, sent=False)
    msg_id = message_id or (f"msg_{ctx.job_id}" if ctx is not None else f"msg_{uuid.uuid4().hex}")
    timestamp = int(time.time())
    signed = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(keys, msg_id, timestamp, body),
    }
    try:
        async with asyncio.timeout(config.timeout) as deadline:
            answer = await deliver(target, body, signed, headers or {}, config, deadline)
    except TimeoutError:
        _fail(ctx, target, started, f"no answer from {target} within {config.timeout:g} s")
    except TargetRefused as exc:
        _fail(ctx, target, started, str(exc), permanent=True)
    except UnresolvableHost as exc:
        _fail(ctx, target, started, f"{exc} (posting to {target})")
    except httpx.HTTPError as exc:  # timeouts of a step, refused or dropped connections, TLS
        _fail(ctx, target, started, f"{type(exc).__name__} posting to {target}: {_text(exc)}")
    elapsed_ms = _elapsed_ms(started)
    if 200 <= answer.status < 300:
        return {
            "status": answer.status,
            "elapsed_ms": elapsed_ms,
            "response_excerpt": answer.excerpt,
            "url": str(answer.url),
            "attempt": ctx.attempt if ctx is not None else 1,
            "message_id": msg_id,
            "redirects": answer.redirects,
        }
    _judge(answer, ctx, config, target, started)


def _judge(
    answer: Answer, ctx: JobContext | None, config: WebhookSettings, target: httpx.URL, started: float
) -> NoReturn:
    """Raise what a non-2xx answer means for the job."""
    status = answer.status
    quoted = answer.excerpt[:_QUOTED_IN_ERRORS]
    said = f"HTTP {status} from {answer.url}" + (f": {quoted!r}" if quoted else "")
    if 300 <= status < 400:
        if status in FOLLOWED_REDIRECTS and answer.location:
            why = f"{said}; more than {config.max_redirects} redirects (max_redirects)"
        else:
            where = f" to {answer.location[:200]}" if answer.location else ""
            why = f"{said}; redirected{where}, which a webhook does not follow: update the URL"
        _fail(ctx, target, started, why, permanent=True, status=status)
    if status in _RETRIED_STATUSES or 500 <= status < 600:
        wait = retry_after_seconds(answer.retry_after, time.time())
        if wait is not None and wait > 0:
            wait = min(wait, config.max_retry_after)
            _fail(ctx, target, started, said, status=status, retry_after=wait)
        _fail(ctx, target, started, said, status=status)
    if 400 <= status < 500:
        gone = "; the receiver no longer takes these webhooks" if status == 410 else ""
        _fail(ctx, target, started, said + gone, permanent=True, status=status)
    _fail(ctx, target, started, f"{said} (not a status a webhook expects)", status=status)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` value as seconds from ``now`` (unix seconds): a number of seconds or
    an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text[:12]))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):  # an offset past any int
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _fail(
    ctx: JobContext | None,
    target: httpx.URL | None,
    started: float,
    message: str,
    *,
    permanent: bool = False,
    status: int | None = None,
    retry_after: float | None = None,
    sent: bool = True,
) -> NoReturn:
    """Log the failure (one line) and raise what it means: Discard, RetryIn or
    WebhookDeliveryError. ``sent``: whether a request was tried (its time is then told)."""
    elapsed_ms = _elapsed_ms(started)
    if sent:
        message = f"{message} (after {elapsed_ms:g} ms)"
    log.log(
        logging.ERROR if permanent else logging.WARNING,
        "%s: %s (%s)",
        _which(ctx),
        message,
        "permanent, not retried" if permanent else "temporary, retried",
        extra={
            **_fields(ctx),
            "event": "webhook_failed",
            "permanent": permanent,
            "status": status,
            "target": None if target is None else f"{target.scheme}://{authority(target)}",
            "elapsed_ms": elapsed_ms,
            "retry_after": retry_after,
        },
    )
    if permanent:
        raise Discard(message)
    if retry_after is not None:
        raise RetryIn(retry_after, f"{message}; Retry-After asks for {retry_after:g} s")
    raise WebhookDeliveryError(message)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _text(exc: BaseException) -> str:
    try:
        return " ".join(str(exc).split()) or type(exc).__name__
    except Exception:
        return type(exc).__name__


def _which(ctx: JobContext | None) -> str:
    if ctx is None:
        return "webhook"
    return f"webhook job {ctx.job_id} attempt {ctx.attempt} of {ctx.max_attempts}"


def _fields(ctx: JobContext | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"task": SEND_TASK}
    if ctx is not None:
        fields.update(job_id=ctx.job_id, attempt=ctx.attempt, max_attempts=ctx.max_attempts, queue=ctx.queue)
    return fields


def register(
    registry: Registry, *, max_attempts: int = WEBHOOK_MAX_ATTEMPTS, backoff: Backoff = WEBHOOK_BACKOFF
) -> Task:
    """Register the webhook task in ``registry`` (a worker's own), with its retry policy."""
    task = build_task(send, name=SEND_TASK, queue=WEBHOOK_QUEUE, max_attempts=max_attempts, backoff=backoff)
    existing = registry.get(SEND_TASK)
    if existing is not None and existing.func is send:
        task = replace(existing, max_attempts=max_attempts, backoff=backoff)
    return registry.add(task)


def webhook_args(
    url: str,
    payload: Any,
    secret: str,
    *,
    event: str | None = None,
    headers: Mapping[str, str] | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """The arguments of a ``conveyor.webhooks.send`` job, checked (``ArgumentsError`` says what
    is wrong): for ``SyncConveyor.enqueue``, ``enqueue_many`` or SQL's enqueue."""
    args: dict[str, Any] = {"url": url, "payload": payload, "secret": secret}
    optional = {
        "event": event,
        "headers": None if headers is None else dict(headers),
        "message_id": message_id,
    }
    args.update({k: v for k, v in optional.items() if v is not None})
    try:
        check_args(**args)
    except (BadWebhook, TargetRefused) as exc:
        raise ArgumentsError(f"task {SEND_TASK!r}: {exc}") from None
    return args


async def send_webhook(
    client: Conveyor,
    url: str,
    payload: Any,
    secret: str,
    *,
    event: str | None = None,
    headers: Mapping[str, str] | None = None,
    message_id: str | None = None,
    conn: Any = None,
    **options: Any,
) -> int:
    """Enqueue a ``conveyor.webhooks.send`` job; returns its id. ``conn``: the caller's psycopg
    AsyncConnection or SQLAlchemy AsyncSession, whose transaction the job commits or rolls
    back with; ``options`` go to :meth:`Conveyor.enqueue` (``delay``, ``priority``,
    ``unique_key``, ``key``, ``max_attempts`` ...)."""
    args = webhook_args(url, payload, secret, event=event, headers=headers, message_id=message_id)
    return await client.enqueue(SEND_TASK, args, conn=conn, **options)
