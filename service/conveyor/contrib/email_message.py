"""The e-mail task's arguments checked, and the message they describe built.

Pure but for reading attachment files. Every refusal is a :class:`BadEmail` whose message
says which argument is wrong and why; the task turns it into ``Discard`` (running the job
again cannot fix its arguments), ``send_email`` into ``ArgumentsError`` before anything is
enqueued.
"""

from __future__ import annotations

import mimetypes
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .email_settings import check_address

# RFC 5322 field names: printable ASCII but the colon.
_FIELD_NAME = re.compile(r"[!-9;-~]{1,76}")
# Set from the task's own arguments or by the message's structure: not overridable by ``headers``.
_RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Reply-To",
        "Subject",
        "Sender",
        "Date",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
    )
)
_HEADER_ARGS = {
    "from": "sender",
    "to": "to",
    "cc": "cc",
    "bcc": "bcc",
    "reply-to": "reply_to",
    "subject": "subject",
}


class BadEmail(ValueError):
    """The arguments do not describe a message that can be sent."""


@dataclass(frozen=True)
class Envelope:
    """What the SMTP conversation needs besides the message: the bare addresses."""

    sender: str
    recipients: list[str]


def check_args(
    *,
    to: object,
    subject: object,
    text: object = None,
    html: object = None,
    cc: object = None,
    bcc: object = None,
    reply_to: object = None,
    sender: object = None,
    attachments: object = None,
    headers: object = None,
) -> list[str]:
    """Check everything that needs no settings; returns the bare recipient addresses."""
    recipients = _addresses(to, "to", required=True)
    recipients += _addresses(cc, "cc") + _addresses(bcc, "bcc")
    if not isinstance(subject, str):
        raise BadEmail(f"subject must be a string, got {type(subject).__name__}")
    _no_line_break(subject, "subject")
    if text is None and html is None:
        raise BadEmail("give text or html (or both): the message has no body")
    for name, body in (("text", text), ("html", html)):
        if body is not None and not isinstance(body, str):
            raise BadEmail(f"{name} must be a string, got {type(body).__name__}")
    if reply_to is not None:
        check_address(reply_to, "reply_to", error=BadEmail)
    if sender is not None:
        check_address(sender, "sender", error=BadEmail)
    for path in _list(attachments, "attachments"):
        relative_path(path)
    _headers(headers)
    return recipients


def relative_path(path: object) -> PurePosixPath:
    """An attachment path as given: relative, inside its folder by name (no ``..``)."""
    if not isinstance(path, str) or not path.strip():
        raise BadEmail(f"attachment path {path!r} must be a non-empty string")
    if "\x00" in path:
        raise BadEmail(f"attachment path {path!r} has a NUL character in it")
    if (
        PurePosixPath(path).is_absolute()
        or PureWindowsPath(path).is_absolute()
        or PureWindowsPath(path).drive
    ):
        raise BadEmail(
            f"attachment path {path!r} is absolute: give a path relative to the attachments folder"
        )
    parts = PurePosixPath(path.replace("\\", "/")).parts
    if ".." in parts:
        raise BadEmail(f"attachment path {path!r} leaves the attachments folder ('..' is refused)")
    return PurePosixPath(*parts)


def resolve_attachment(folder: str, path: str) -> Path:
    """The file an attachment names, refused unless it is a regular file that is inside
    ``folder`` once every symbolic link is followed."""
    relative = relative_path(path)
    base = Path(folder).resolve(strict=True)
    candidate = base.joinpath(relative)
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        raise BadEmail(f"attachment {path!r} does not exist in the attachments folder") from None
    if not real.is_relative_to(base):
        raise BadEmail(f"attachment {path!r} is a link to a file outside the attachments folder (refused)")
    if not real.is_file():
        raise BadEmail(f"attachment {path!r} is not a regular file")
    return real


def build_message(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    text: str | None,
    html: str | None,
    cc: Sequence[str] | None,
    bcc: Sequence[str] | None,
    reply_to: str | None,
    headers: Mapping[str, str] | None,
    attachments: Sequence[tuple[str, bytes]],
    message_id: str | None,
) -> tuple[EmailMessage, Envelope]:
    """The message (text and html as multipart/alternative, attachments beside them) and its
    envelope. Bcc recipients are in the envelope only, never in a header."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if reply_to is not None:
        message["Reply-To"] = reply_to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    extra = dict(headers or {})
    given_id = next((v for k, v in extra.items() if k.lower() == "message-id"), None)
    extra = {k: v for k, v in extra.items() if k.lower() != "message-id"}
    domain = check_address(sender, "sender", error=BadEmail).rpartition("@")[2]
    message["Message-ID"] = given_id or message_id or make_msgid(domain=domain)
    for name, value in extra.items():
        message[name] = value
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    for filename, data in attachments:
        kind, encoding = mimetypes.guess_type(filename)
        if kind is None or encoding is not None:  # a .gz is gzip data, not its inner type
            kind = "application/octet-stream"
        maintype, _, subtype = kind.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    recipients = [check_address(a, "recipient", error=BadEmail) for a in [*to, *(cc or ()), *(bcc or ())]]
    envelope = Envelope(check_address(sender, "sender", error=BadEmail), list(dict.fromkeys(recipients)))
    return message, envelope


def read_attachments(folder: str | None, paths: Sequence[str], limit: int) -> list[tuple[str, bytes]]:
    """Each attachment's file name and content, read from ``folder``; refused past ``limit``
    bytes in all."""
    if not paths:
        return []
    if folder is None:
        raise BadEmail(
            "the job has attachments but no attachments folder is configured (CONVEYOR_EMAIL_ATTACHMENTS_DIR)"
        )
    read: list[tuple[str, bytes]] = []
    remaining = limit
    for path in paths:
        real = resolve_attachment(folder, path)
        # O_NOFOLLOW: a link put in the file's place since it was resolved is not followed.
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(remaining + 1)
        if len(data) > remaining:
            raise BadEmail(f"attachments add up to more than the {limit} byte limit (at {path!r})")
        remaining -= len(data)
        read.append((relative_path(path).name, data))
    return read


def _addresses(value: object, name: str, *, required: bool = False) -> list[str]:
    items = _list(value, name)
    if required and not items:
        raise BadEmail(f"{name} must name at least one recipient")
    return [check_address(item, f"{name} address", error=BadEmail) for item in items]


def _list(value: object, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadEmail(f"{name} must be a list, got {type(value).__name__}")
    return value


def _no_line_break(value: str, what: str) -> None:
    if "\r" in value or "\n" in value:
        raise BadEmail(f"{what} has a line break in it (header injection refused)")


def _headers(headers: object) -> None:
    if headers is None:
        return
    if not isinstance(headers, dict):
        raise BadEmail(f"headers must be an object of names to values, got {type(headers).__name__}")
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            raise BadEmail(f"header name {name!r} is not a valid field name")
        if name.lower() in seen:
            raise BadEmail(f"header {name!r} is given twice")
        seen.add(name.lower())
        if name.lower() in _RESERVED_HEADERS:
            argument = _HEADER_ARGS.get(name.lower())
            use = f"use the {argument!r} argument" if argument else "it is set by the message's structure"
            raise BadEmail(f"header {name!r} cannot be set through headers: {use}")
        if not isinstance(value, str):
            raise BadEmail(f"header {name!r} must be a string, got {type(value).__name__}")
        if any(ch in value for ch in "\r\n\x00"):
            raise BadEmail(f"header {name!r} has a line break in its value (header injection refused)")
