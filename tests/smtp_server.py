"""A real SMTP server for the e-mail tests (aiosmtpd, in a thread of its own), told how to answer.

``SmtpServer`` listens on a free loopback port; its ``handler`` records every accepted message
and can be told to answer the next DATA commands with given replies (``451 ...`` then the
usual ``250``) or to refuse given recipients. ``self_signed_certificate`` makes a certificate
for 127.0.0.1 and localhost with the ``openssl`` command.
"""

from __future__ import annotations

import email
import email.policy
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: bool
    login: str | None


@dataclass
class Handler:
    """Answers as told: ``data_replies`` are given to the next DATA commands in turn, then 250;
    ``refuse`` maps a recipient to the reply its RCPT gets."""

    data_replies: list[str] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    data_commands: int = 0
    arrived: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_commands += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        # Parsed as a program reads a file: line ends as \n, not the wire's \r\n.
        content = envelope.original_content.replace(b"\r\n", b"\n")
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data.decode() if session.authenticated else None
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), parsed, _over_tls(server, session), login)
        )
        self.arrived.set()
        return "250 2.0.0 Message accepted for delivery"


def _over_tls(server: Any, session: Any) -> bool:
    """Upgraded by STARTTLS, or TLS from the first byte (which aiosmtpd does not note in the session)."""
    return session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None


class _AnyPortController(Controller):
    """aiosmtpd's Controller on port 0: the port the system chose is read before the first
    connection (its readiness check connects to ``self.port``)."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class Credentials:
    def __init__(self, username: str, password: str) -> None:
        self.username = username.encode()
        self.password = password.encode()

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.username
            and auth_data.password == self.password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)


@contextmanager
def smtp_server(
    handler: Handler | None = None,
    *,
    tls_context: ssl.SSLContext | None = None,
    credentials: Credentials | None = None,
    implicit_tls: bool = False,
) -> Iterator[tuple[Handler, int]]:
    """A running server on 127.0.0.1 and its port; STARTTLS (required) with ``tls_context``, or
    TLS from the first byte with ``implicit_tls`` too; AUTH (required, over TLS) with
    ``credentials``."""
    handler = handler or Handler()
    kwargs: dict[str, Any] = {}
    if tls_context is not None and implicit_tls:
        kwargs.update(ssl_context=tls_context)
    elif tls_context is not None:
        kwargs.update(tls_context=tls_context, require_starttls=True)
    if credentials is not None:
        kwargs.update(authenticator=credentials, auth_required=True)
    controller = _AnyPortController(handler, hostname="127.0.0.1", port=0, **kwargs)
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate (its own authority) for 127.0.0.1 and localhost, and its key."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
