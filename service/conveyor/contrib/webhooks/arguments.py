"""A webhook job's arguments checked, and the body they describe.

Pure. Every refusal is a :class:`BadWebhook` whose message says which argument is wrong and
why; the task turns it into ``Discard`` (running the job again cannot fix its arguments),
``webhook_args`` and ``send_webhook`` into ``ArgumentsError`` before anything is enqueued.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from .settings import SECRET_NAME
from .signing import check_message_id
from .targets import check_url

MAX_HEADERS = 50
MAX_HEADER_BYTES = 8192
MAX_EVENT_LENGTH = 200

# Set by this task, or the HTTP framing's own: not for a job's ``headers``.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}")  # RFC 9110 field names


class BadWebhook(ValueError):
    """A job's arguments cannot make a webhook (the message says which and why)."""


def check_args(
    url: object,
    payload: object,
    secret: object,
    event: object = None,
    headers: object = None,
    message_id: object = None,
) -> httpx.URL:
    """The URL parsed, once every argument is checked: BadWebhook (or TargetRefused for a
    scheme other than http and https) says what is wrong. The target's addresses are judged
    when the job runs, by the worker's settings."""
    try:
        target = check_url(url)
    except ValueError as exc:
        raise BadWebhook(str(exc)) from None
    if not isinstance(secret, str) or not secret:
        raise BadWebhook("secret must be the name of a secret (e.g. 'billing'), not empty")
    if secret.strip().startswith("whsec_"):
        raise BadWebhook(
            "secret must be the NAME of a secret the worker has (CONVEYOR_WEBHOOK_SECRET_<NAME>), "
            "not the secret itself: a secret in a job's arguments would be stored with the job"
        )
    if not SECRET_NAME.fullmatch(secret):
        raise BadWebhook(f"secret name {secret[:80]!r} is not allowed: use 1 to 64 letters, digits and _")
    if event is not None and (
        not isinstance(event, str) or not 0 < len(event) <= MAX_EVENT_LENGTH or not event.isprintable()
    ):
        raise BadWebhook(f"event must be printable text of 1 to {MAX_EVENT_LENGTH} characters")
    if message_id is not None:
        try:
            check_message_id(message_id)
        except ValueError as exc:
            raise BadWebhook(str(exc)) from None
    if headers is not None:
        _check_headers(headers)
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BadWebhook(f"payload is not JSON: {exc}") from None
    return target


def _check_headers(headers: object) -> None:
    if not isinstance(headers, Mapping):
        raise BadWebhook("headers must be an object of header names to values")
    if len(headers) > MAX_HEADERS:
        raise BadWebhook(f"{len(headers)} headers: at most {MAX_HEADERS}")
    size = 0
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise BadWebhook(f"header name {name!r} is not a valid HTTP field name")
        if not isinstance(value, str):
            raise BadWebhook(f"header {name!r}: the value must be a string")
        if any(ch in value for ch in "\r\n\x00"):
            raise BadWebhook(f"header {name!r}: the value has a line break in it (header injection refused)")
        if any((ord(ch) < 32 and ch != "\t") or ord(ch) == 127 for ch in value):
            raise BadWebhook(f"header {name!r}: the value has a control character in it")
        if not value.isascii():
            raise BadWebhook(f"header {name!r}: the value must be ASCII (percent-encode other text)")
        lowered = name.lower()
        if lowered.startswith("webhook-") or lowered in _RESERVED_HEADERS:
            raise BadWebhook(f"header {name!r} is set by the webhook task and cannot be given")
        size += len(name) + len(value)
    if size > MAX_HEADER_BYTES:
        raise BadWebhook(f"headers take {size} bytes, more than {MAX_HEADER_BYTES}")


def build_body(payload: Any, event: str | None, enqueued_at: datetime | None) -> bytes:
    """The bytes sent and signed: compact JSON of the payload, or of the spec's envelope
    ``{"type": event, "timestamp": enqueued_at, "data": payload}`` when there is an event."""
    if event is not None:
        when = enqueued_at if enqueued_at is not None else datetime.now(UTC)
        payload = {"type": event, "timestamp": _iso(when), "data": payload}
    try:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BadWebhook(f"payload is not JSON: {exc}") from None
    return text.encode("utf-8")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
