"""E-mail over SMTP as a ready task: ``conveyor.email.send`` on the ``emails`` queue.

Importing this module registers the task in the default registry, so a worker started with
``conveyor worker --tasks conveyor.contrib.email`` (or an application's module that imports
it) sends the mail. The server, credentials and TLS come from the worker's environment
(``CONVEYOR_SMTP_*``, see :class:`EmailSettings`) or from :func:`configure`, never from the
job's arguments. Applications enqueue with :func:`send_email`::

    await send_email(client, to=["ada@example.com"], subject="Welcome", text="Hello!")

How failures end (docs/email.md):

- a temporary failure (a 4xx reply, a refused or dropped connection, a timeout, a TLS
  handshake that failed) raises :class:`TemporaryEmailFailure`: the job is retried with the
  task's backoff (8 attempts over about an hour by default);
- a permanent one (a 5xx reply: every recipient refused, the sender or the message refused,
  authentication refused with 535; a server without the STARTTLS or AUTH the settings ask
  for) raises ``Discard`` with the server's reply: the job goes to the dead-letter table at
  once;
- bad arguments (no body, a header with a line break, an attachment outside its folder) are
  discarded too, with the reason;
- some recipients refused while others were accepted: the message went out, so the job
  completes (retrying would send it again to those who got it); the refused addresses and
  the server's reply for each are in the result's ``refused`` and in a warning.

Each failure is one structured line of the ``conveyor.email`` logger (``event``: ``email_failed``
or ``email_partly_refused``, with ``permanent``, ``smtp_code``, ``smtp_reply``, ``smtp_server``
and the job's id and attempt), besides the worker's own line about the retry or the dead letter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import aiosmtplib

from ..backoff import Backoff
from ..errors import ArgumentsError, ConfigurationError, Discard
from ..queue.client import Conveyor
from ..queue.context import JobContext
from ..tasks import Registry, Task, build_task, default_registry
from .email_message import BadEmail, build_message, check_args, read_attachments
from .email_settings import EmailSettings

__all__ = [
    "EMAIL_BACKOFF",
    "EMAIL_MAX_ATTEMPTS",
    "EMAIL_QUEUE",
    "SEND_TASK",
    "EmailSettings",
    "TemporaryEmailFailure",
    "configure",
    "current_settings",
    "email_args",
    "register",
    "send",
    "send_email",
]

SEND_TASK = "conveyor.email.send"
EMAIL_QUEUE = "emails"
# 30 s, 1 min, 2, 4, 8, 16, then 30 min: eight attempts span about an hour, long enough for
# greylisting and a relay's restart, short enough that a mail is not days late.
EMAIL_BACKOFF = Backoff(base=30.0, factor=2.0, cap=1800.0, jitter=0.1)
EMAIL_MAX_ATTEMPTS = 8

log = logging.getLogger("conveyor.email")

_configured: EmailSettings | None = None


class TemporaryEmailFailure(Exception):
    """The server or the network failed in a way a later attempt may not: the job is retried."""


def configure(settings: EmailSettings | None) -> None:
    """Send with these settings in this process instead of the environment's (None: back to
    the environment)."""
    global _configured
    if settings is not None and not isinstance(settings, EmailSettings):
        raise ConfigurationError(f"configure() takes EmailSettings, got {type(settings).__name__}")
    _configured = settings


def current_settings() -> EmailSettings:
    """The settings sends use now: the configured ones, else the environment's (read each
    time, so a worker's environment is all it takes)."""
    return _configured if _configured is not None else EmailSettings.from_env()


async def send(
    to: list[str],
    subject: str,
    text: str | None = None,
    html: str | None = None,
    cc: list[str] | None = None,
    bcc: list[str] | None = None,
    reply_to: str | None = None,
    sender: str | None = None,
    attachments: list[str] | None = None,
    headers: dict[str, str] | None = None,
    ctx: JobContext | None = None,
) -> dict[str, Any]:
    """Send one message; returns ``{"message_id", "accepted", "refused", "reply"}``, where
    ``refused`` maps each refused recipient to the server's reply (``"550 5.1.1 ..."``)."""
    try:
        check_args(
            to=to,
            subject=subject,
            text=text,
            html=html,
            cc=cc,
            bcc=bcc,
            reply_to=reply_to,
            sender=sender,
            attachments=attachments,
            headers=headers,
        )
        # A ConfigurationError is retried: the job is fine, the worker's settings are not.
        config = current_settings()
        chosen = sender or config.sender
        if chosen is None:
            raise ConfigurationError(
                "the job names no sender and no default is set: set CONVEYOR_SMTP_FROM or pass sender"
            )
        files = read_attachments(config.attachments_dir, attachments or [], config.max_attachment_bytes)
        message, envelope = build_message(
            sender=chosen,
            to=to,
            subject=subject,
            text=text,
            html=html,
            cc=cc,
            bcc=bcc,
            reply_to=reply_to,
            headers=headers,
            attachments=files,
            message_id=_message_id(ctx, chosen),
        )
    except BadEmail as exc:
        _log_failure(ctx, f"refused: {exc}", permanent=True)
        raise Discard(str(exc)) from None
    except ConfigurationError as exc:
        _log_failure(ctx, f"cannot be sent: {exc}", permanent=False)
        raise
    client = aiosmtplib.SMTP(
        hostname=config.host,
        port=config.effective_port,
        username=config.username,
        password=config.password,
        use_tls=config.security == "tls",
        start_tls=config.security == "starttls",
        validate_certs=config.validate_certs,
        cert_bundle=config.ca_file,
        timeout=config.timeout,
        local_hostname=config.local_hostname,
    )
    try:
        await client.connect()
        refused, reply = await client.send_message(
            message, sender=envelope.sender, recipients=envelope.recipients
        )
    except Exception as exc:
        client.close()
        raise _judged(exc, config, ctx, len(envelope.recipients)) from exc
    except BaseException:  # cancelled (an abort, the worker stopping): leave no connection behind
        client.close()
        raise
    await _quit(client)  # the message is accepted: nothing that happens now may send it again
    refusals = {address: _reply(r.code, r.message) for address, r in refused.items()}
    if refusals:
        log.warning(
            "%s: the server at %s refused %d of %d recipients: %s",
            _which(ctx),
            config.where,
            len(refusals),
            len(envelope.recipients),
            "; ".join(f"{a}: {r}" for a, r in refusals.items()),
            extra={**_fields(ctx, config), "event": "email_partly_refused", "refused": refusals},
        )
    return {
        "message_id": message["Message-ID"],
        "accepted": [a for a in envelope.recipients if a not in refused],
        "refused": refusals,
        "reply": _reply(250, reply),
    }


def register(
    registry: Registry, *, max_attempts: int = EMAIL_MAX_ATTEMPTS, backoff: Backoff = EMAIL_BACKOFF
) -> Task:
    """Register the e-mail task in ``registry`` (a worker's own), with its retry policy."""
    task = build_task(send, name=SEND_TASK, queue=EMAIL_QUEUE, max_attempts=max_attempts, backoff=backoff)
    existing = registry.get(SEND_TASK)
    if existing is not None and existing.func is send:
        task = replace(existing, max_attempts=max_attempts, backoff=backoff)
    return registry.add(task)


register(default_registry)


def email_args(
    to: str | Sequence[str],
    subject: str,
    text: str | None = None,
    html: str | None = None,
    *,
    cc: Sequence[str] | None = None,
    bcc: Sequence[str] | None = None,
    reply_to: str | None = None,
    sender: str | None = None,
    attachments: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The arguments of a ``conveyor.email.send`` job, checked (``ArgumentsError`` says what is
    wrong): for ``SyncConveyor.enqueue``, ``enqueue_many`` or SQL's enqueue."""
    args: dict[str, Any] = {"to": [to] if isinstance(to, str) else list(to), "subject": subject}
    optional = {
        "text": text,
        "html": html,
        "cc": None if cc is None else list(cc),
        "bcc": None if bcc is None else list(bcc),
        "reply_to": reply_to,
        "sender": sender,
        "attachments": None if attachments is None else list(attachments),
        "headers": None if headers is None else dict(headers),
    }
    args.update({k: v for k, v in optional.items() if v is not None})
    try:
        check_args(**args)
    except BadEmail as exc:
        raise ArgumentsError(f"task {SEND_TASK!r}: {exc}") from None
    return args


async def send_email(
    client: Conveyor,
    to: str | Sequence[str],
    subject: str,
    text: str | None = None,
    html: str | None = None,
    *,
    cc: Sequence[str] | None = None,
    bcc: Sequence[str] | None = None,
    reply_to: str | None = None,
    sender: str | None = None,
    attachments: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
    conn: Any = None,
    **options: Any,
) -> int:
    """Enqueue a ``conveyor.email.send`` job; returns its id. ``conn``: the caller's psycopg
    AsyncConnection or SQLAlchemy AsyncSession, whose transaction the job commits or rolls
    back with; ``options`` go to :meth:`Conveyor.enqueue` (``delay``, ``run_at``, ``priority``,
    ``unique_key``, ``key``, ``meta``, ``max_attempts`` ...)."""
    args = email_args(
        to,
        subject,
        text,
        html,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        sender=sender,
        attachments=attachments,
        headers=headers,
    )
    return await client.enqueue(SEND_TASK, args, conn=conn, **options)


def _judged(exc: Exception, config: EmailSettings, ctx: JobContext | None, recipients: int) -> Exception:
    """The exception a failed send raises: Discard for a permanent failure, TemporaryEmailFailure
    otherwise. Logs one line either way."""
    code: int | None = None
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        permanent = all(c >= 500 for c in codes)
        code = max(codes) if permanent else min(codes)
        what = "refused every recipient: " + "; ".join(
            f"{r.recipient}: {_reply(r.code, r.message)}" for r in exc.recipients
        )
    elif isinstance(exc, aiosmtplib.SMTPResponseException):
        code = exc.code
        permanent = 500 <= exc.code < 600
        what = f"answered {_reply(exc.code, exc.message)}" + _stage(exc)
    elif isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        permanent = False
        what = f"did not answer within {config.timeout:g} s ({_text(exc) or type(exc).__name__})"
    elif isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError | OSError):
        permanent = False
        what = f"could not be reached or dropped the connection ({type(exc).__name__}: {_text(exc)})"
    elif isinstance(exc, aiosmtplib.SMTPException):
        # The server lacks what the settings require (STARTTLS, AUTH, SMTPUTF8): no retry fixes it.
        permanent = True
        what = f"cannot be used as configured: {_text(exc)}"
    elif isinstance(exc, ValueError):
        permanent = True  # an address aiosmtplib will not put in the envelope
        what = f"cannot be given this message: {_text(exc)}"
    else:
        permanent = False
        what = f"failed: {type(exc).__name__}: {_text(exc)}"
    message = f"SMTP server {config.where} {what}"
    _log_failure(
        ctx, message, permanent=permanent, config=config, code=code, reply=what, recipients=recipients
    )
    return Discard(message) if permanent else TemporaryEmailFailure(message)


def _log_failure(
    ctx: JobContext | None,
    what: str,
    *,
    permanent: bool,
    config: EmailSettings | None = None,
    code: int | None = None,
    reply: str | None = None,
    recipients: int | None = None,
) -> None:
    """The one structured line of a failed send (WARNING when it is retried, ERROR when not)."""
    log.log(
        logging.ERROR if permanent else logging.WARNING,
        "%s: %s (%s)",
        _which(ctx),
        what,
        "permanent, not retried" if permanent else "temporary, retried",
        extra={
            **_fields(ctx, config),
            "event": "email_failed",
            "permanent": permanent,
            "smtp_code": code,
            "smtp_reply": reply,
            "recipients": recipients,
        },
    )


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit()
    except Exception:
        client.close()


def _message_id(ctx: JobContext | None, sender: str) -> str | None:
    """One Message-ID for every attempt of a job, so a receiver can tell a resend from a new
    mail (None outside a job: a random one is made)."""
    if ctx is None:
        return None
    domain = sender.rpartition("@")[2].rstrip(">").strip() or "localhost"
    stamp = int(ctx.enqueued_at.timestamp() * 1_000_000)
    return f"<conveyor.{ctx.job_id}.{stamp}@{domain}>"


def _reply(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}".strip()


def _stage(exc: Exception) -> str:
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return " to the login (check CONVEYOR_SMTP_USERNAME and the password)"
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return f" to the sender {exc.sender}"
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return " to the message"
    return ""


def _text(exc: BaseException) -> str:
    try:
        return " ".join(str(exc).split())
    except Exception:
        return ""


def _which(ctx: JobContext | None) -> str:
    if ctx is None:
        return "e-mail"
    return f"e-mail job {ctx.job_id} attempt {ctx.attempt} of {ctx.max_attempts}"


def _fields(ctx: JobContext | None, config: EmailSettings | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"smtp_server": None if config is None else config.where, "task": SEND_TASK}
    if ctx is not None:
        fields.update(job_id=ctx.job_id, attempt=ctx.attempt, max_attempts=ctx.max_attempts, queue=ctx.queue)
    return fields
