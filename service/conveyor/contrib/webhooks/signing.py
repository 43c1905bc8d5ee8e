"""Standard Webhooks signatures (https://www.standardwebhooks.com), symmetric scheme ``v1``.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}`` (the body's raw bytes), the
key is the base64 text after ``whsec_`` decoded, and a signature is ``v1,`` followed by the
base64 of its HMAC-SHA256. The ``webhook-signature`` header is a space-separated list of such
signatures, one per secret in use, so that a secret can be rotated without a gap: a receiver
accepts a message when any signature matches any secret it knows.

Nothing here logs, and no message repeats a secret or a key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping
from datetime import datetime

SECRET_PREFIX = "whsec_"
# The spec: "Random. At least 24 bytes". Shorter keys are refused for sending.
MIN_KEY_BYTES = 24
DEFAULT_TOLERANCE = 300  # seconds a timestamp may be off, either way (the spec's five minutes)

# A webhook-id is signed as the text before the first dot: it must have no dot of its own
# (the spec), nor anything that cannot travel in a header.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_:\-]{1,128}")
# What a receiver accepts from any sender: no dot, nothing invisible, not absurdly long.
_RECEIVED_ID = re.compile(r"[!-\-/-~]{1,256}")


class WebhookVerificationError(Exception):
    """A received webhook is not proven authentic: a header is missing or malformed, its
    timestamp is outside the tolerance, or no signature matches a known secret."""


class SecretError(ValueError):
    """A secret is not ``whsec_`` followed by base64 (the message never repeats it)."""


def decode_secret(secret: str | bytes, *, min_bytes: int = 1) -> bytes:
    """The HMAC key of a secret: ``whsec_<base64>`` (the prefix may be left out; missing
    base64 padding is tolerated, as the spec's own libraries do), or the key itself as bytes."""
    if isinstance(secret, bytes):
        key = secret
    elif isinstance(secret, str):
        text = secret.strip()
        text = text.removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise SecretError("the secret is not whsec_ followed by base64") from None
    else:
        raise SecretError(f"a secret is a string (whsec_...) or bytes, not {type(secret).__name__}")
    if len(key) < min_bytes:
        raise SecretError(f"the secret's key has {len(key)} bytes; at least {min_bytes} are required")
    return key


def check_message_id(msg_id: object) -> str:
    """``msg_id`` if it can be a webhook-id: 1 to 128 of letters, digits, ``_``, ``-``, ``:``."""
    if not isinstance(msg_id, str) or not _MESSAGE_ID.fullmatch(msg_id):
        raise ValueError(
            f"webhook id {msg_id!r} is not allowed: use 1 to 128 letters, digits, _ - or : (no dot)"
        )
    return msg_id


def sign(secret: str | bytes, msg_id: str, timestamp: int | datetime, body: bytes | str) -> str:
    """The ``v1,<base64>`` signature of one message with one secret.

    ``timestamp``: unix seconds (or an aware datetime, cut to whole seconds); ``body``: the
    exact bytes sent (a str is encoded as UTF-8)."""
    return _signature(decode_secret(secret), check_message_id(msg_id), _seconds(timestamp), _bytes(body))


def signature_header(
    secrets: Iterable[str | bytes], msg_id: str, timestamp: int | datetime, body: bytes | str
) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    stamp, data = _seconds(timestamp), _bytes(body)
    check_message_id(msg_id)
    signatures = [_signature(decode_secret(s), msg_id, stamp, data) for s in secrets]
    if not signatures:
        raise SecretError("no secret to sign with")
    return " ".join(signatures)


def verify(
    secrets: str | bytes | Iterable[str | bytes],
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | datetime | None = None,
) -> str:
    """Check a received webhook; returns its ``webhook-id`` (use it to drop duplicates).

    ``secrets``: the secret (``whsec_...``), several of them space-separated in one string
    (the form of ``CONVEYOR_WEBHOOK_SECRET_<NAME>``), or an iterable of them: any may match.
    ``headers``: the request's headers, in any case (a dict, Starlette's ``request.headers``
    ...). ``body``: the raw body bytes as received; never JSON parsed and dumped again.
    ``now``: unix seconds or a datetime, for tests. Raises :class:`WebhookVerificationError`.
    """
    keys = _keys(secrets)
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    missing = [
        name
        for name, value in (
            ("webhook-id", msg_id),
            ("webhook-timestamp", stamp),
            ("webhook-signature", signatures),
        )
        if not value
    ]
    if missing or msg_id is None or stamp is None or signatures is None:
        raise WebhookVerificationError(f"missing header {', '.join(missing)}")
    if not _RECEIVED_ID.fullmatch(msg_id):
        raise WebhookVerificationError("malformed webhook-id header (a dot, a space or a control character)")
    stamp = stamp.strip()
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise WebhookVerificationError("malformed webhook-timestamp header (unix seconds expected)")
    sent_at = int(stamp)
    current = _now_seconds(now)
    if sent_at < current - tolerance:
        raise WebhookVerificationError(f"webhook-timestamp is too old ({current - sent_at:.0f} s ago)")
    if sent_at > current + tolerance:
        raise WebhookVerificationError(
            f"webhook-timestamp is in the future ({sent_at - current:.0f} s ahead)"
        )
    data = _bytes(body)
    expected = [_digest(key, msg_id, sent_at, data) for key in keys]
    matched = False
    for entry in signatures.split():
        version, comma, encoded = entry.partition(",")
        if version != "v1" or not comma:
            continue  # another scheme (v1a ...) or not a signature: not ours to judge
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        for digest in expected:
            # Every comparison runs, so the time taken does not tell which one matched.
            matched |= hmac.compare_digest(digest, given)
    if not matched:
        raise WebhookVerificationError("no signature matches a known secret")
    return msg_id


def _keys(secrets: str | bytes | Iterable[str | bytes]) -> list[bytes]:
    if isinstance(secrets, str):
        items: list[str | bytes] = list(secrets.split())
    elif isinstance(secrets, bytes):
        items = [secrets]
    else:
        items = list(secrets)
    if not items:
        raise ValueError("verify() needs at least one secret")
    return [decode_secret(item) for item in items]


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    return "v1," + base64.b64encode(_digest(key, msg_id, timestamp, body)).decode("ascii")


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def _seconds(timestamp: int | datetime) -> int:
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            raise ValueError("the timestamp must be an aware datetime (a naive one has no fixed moment)")
        return int(timestamp.timestamp() // 1)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError(f"the timestamp must be whole unix seconds, got {timestamp!r}")
    return timestamp


def _now_seconds(now: float | datetime | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        return now.timestamp()
    return float(now)


def _bytes(body: bytes | str) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise TypeError(f"the body must be bytes or str, not {type(body).__name__}")
