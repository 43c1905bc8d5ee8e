"""Where the e-mail task sends from: the SMTP server, its credentials and TLS, as checked values.

Read from the worker's environment by :meth:`EmailSettings.from_env`, or set in code with
``conveyor.contrib.email.configure``. Never from job arguments: a password in a job would sit
in the jobs table, the dashboard and every dead letter. The password is kept out of ``repr``
and out of every message this module writes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from email.utils import getaddresses
from pathlib import Path
from typing import Literal

from ..durations import parse_duration
from ..errors import ConfigurationError, InvalidOptionError

Security = Literal["starttls", "tls", "none"]
SECURITY_MODES: tuple[Security, ...] = ("starttls", "tls", "none")
DEFAULT_PORTS: dict[Security, int] = {"starttls": 587, "tls": 465, "none": 25}
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024

ENV = {
    "host": "CONVEYOR_SMTP_HOST",
    "port": "CONVEYOR_SMTP_PORT",
    "username": "CONVEYOR_SMTP_USERNAME",
    "password": "CONVEYOR_SMTP_PASSWORD",
    "password_file": "CONVEYOR_SMTP_PASSWORD_FILE",
    "security": "CONVEYOR_SMTP_SECURITY",
    "sender": "CONVEYOR_SMTP_FROM",
    "timeout": "CONVEYOR_SMTP_TIMEOUT",
    "validate_certs": "CONVEYOR_SMTP_VALIDATE_CERTS",
    "ca_file": "CONVEYOR_SMTP_CA_FILE",
    "local_hostname": "CONVEYOR_SMTP_LOCAL_HOSTNAME",
    "attachments_dir": "CONVEYOR_EMAIL_ATTACHMENTS_DIR",
    "max_attachment_bytes": "CONVEYOR_EMAIL_MAX_ATTACHMENT_BYTES",
}


@dataclass(frozen=True)
class EmailSettings:
    """An SMTP server to send through and how.

    - ``security``: ``starttls`` (connect in clear, then upgrade; refused if the server does
      not offer it), ``tls`` (TLS from the first byte, "SMTPS") or ``none``.
    - ``port``: None for the usual one of ``security`` (587, 465, 25).
    - ``username`` and ``password``: both or neither; never over ``security="none"``.
    - ``sender``: the From of jobs that name none.
    - ``timeout``: seconds each step (connect, each command, the message's data) may take.
    - ``validate_certs`` and ``ca_file``: check the server's certificate, against the system's
      authorities or the ones in ``ca_file`` (PEM).
    - ``attachments_dir``: the folder attachment paths are relative to; None: no attachments.
    - ``max_attachment_bytes``: the most a message's attachments may add up to.
    """

    host: str
    port: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    security: Security = "starttls"
    sender: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    validate_certs: bool = True
    ca_file: str | None = None
    local_hostname: str | None = None
    attachments_dir: str | None = None
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip() or _has_space_or_break(self.host):
            raise ConfigurationError(f"SMTP host {self.host!r} is not a host name or address ({ENV['host']})")
        if self.security not in SECURITY_MODES:
            raise ConfigurationError(
                f"SMTP security {self.security!r} is not one of starttls, tls, none ({ENV['security']})"
            )
        if self.port is not None and (
            isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535
        ):
            raise ConfigurationError(f"SMTP port {self.port!r} is not a port from 1 to 65535 ({ENV['port']})")
        if (self.username is None) != (self.password is None):
            # Never the password itself, in this message or any other.
            raise ConfigurationError(
                f"SMTP credentials are half set: give both {ENV['username']} and {ENV['password']} "
                f"(or {ENV['password_file']}), or neither"
            )
        if self.username is not None and self.security == "none":
            raise ConfigurationError(
                "SMTP credentials would cross the network unencrypted: set security to starttls or tls "
                f"({ENV['security']})"
            )
        if not (isinstance(self.timeout, int | float) and math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigurationError(f"SMTP timeout {self.timeout!r} must be a positive number of seconds")
        if self.sender is not None:
            check_address(self.sender, f"the default sender ({ENV['sender']})", error=ConfigurationError)
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ConfigurationError(f"SMTP CA file {self.ca_file!r} does not exist ({ENV['ca_file']})")
        if self.attachments_dir is not None and not Path(self.attachments_dir).is_dir():
            raise ConfigurationError(
                f"attachments folder {self.attachments_dir!r} is not a folder ({ENV['attachments_dir']})"
            )
        if (
            isinstance(self.max_attachment_bytes, bool)
            or not isinstance(self.max_attachment_bytes, int)
            or self.max_attachment_bytes < 0
        ):
            raise ConfigurationError(
                f"max_attachment_bytes {self.max_attachment_bytes!r} must be a whole number of bytes"
            )

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.security]

    @property
    def where(self) -> str:
        """``host:port``, for messages and logs."""
        return f"{self.host}:{self.effective_port}"

    @classmethod
    def from_env(cls) -> EmailSettings:
        """The settings in the environment variables named in ``ENV`` (CONVEYOR_SMTP_HOST is
        required; the others have the defaults of the fields)."""
        host = _env("host")
        if host is None:
            raise ConfigurationError(
                f"no SMTP server: set {ENV['host']} (and the other CONVEYOR_SMTP_ settings)"
            )
        security = (_env("security") or "starttls").lower()
        if security not in SECURITY_MODES:
            raise ConfigurationError(f"{ENV['security']}={security!r}: use starttls, tls or none")
        return cls(
            host=host,
            port=_port(),
            username=_env("username"),
            password=_password(),
            security=security,  # checked just above
            sender=_env("sender"),
            timeout=_timeout(),
            validate_certs=_switch("validate_certs", True),
            ca_file=_env("ca_file"),
            local_hostname=_env("local_hostname"),
            attachments_dir=_env("attachments_dir"),
            max_attachment_bytes=_bytes("max_attachment_bytes", DEFAULT_MAX_ATTACHMENT_BYTES),
        )


def check_address(value: object, what: str, *, error: type[Exception] = ValueError) -> str:
    """The bare address (``a@example.com``) of one address as people write it, possibly with a
    display name (``Ada <a@example.com>``); ``error`` (a ValueError by default) when it is not
    exactly one plain address or has a line break in it."""
    if not isinstance(value, str):
        raise error(f"{what} must be a string, got {type(value).__name__}")
    if "\r" in value or "\n" in value:
        raise error(f"{what} {value!r} has a line break in it (header injection refused)")
    parsed = getaddresses([value])
    if len(parsed) != 1:
        raise error(f"{what} {value!r} is not one e-mail address")
    address = parsed[0][1]
    local, at, domain = address.rpartition("@")
    if not (at and local and domain) or _has_space_or_break(address) or "@" in domain:
        raise error(f"{what} {value!r} is not an e-mail address")
    return address


def _has_space_or_break(text: str) -> bool:
    return any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text)


def _env(key: str) -> str | None:
    raw = os.environ.get(ENV[key])
    if raw is None or not raw.strip():
        return None
    return raw.strip()


def _port() -> int | None:
    raw = _env("port")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise ConfigurationError(f"{ENV['port']}={raw!r}: use a port number from 1 to 65535")
    return int(raw)


def _password() -> str | None:
    inline = os.environ.get(ENV["password"])
    path = _env("password_file")
    if inline and path:
        raise ConfigurationError(f"set {ENV['password']} or {ENV['password_file']}, not both")
    if path is None:
        return inline or None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"{ENV['password_file']}={path!r}: cannot read it ({exc.strerror})"
        ) from None
    return text.rstrip("\r\n") or None


def _timeout() -> float:
    raw = _env("timeout")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        return parse_duration(raw, default_unit="s").total_seconds()
    except InvalidOptionError as exc:
        raise ConfigurationError(f"{ENV['timeout']}: {exc}") from None


def _switch(key: str, default: bool) -> bool:
    raw = _env(key)
    if raw is None:
        return default
    if raw.lower() in {"1", "on", "true", "yes"}:
        return True
    if raw.lower() in {"0", "off", "false", "no"}:
        return False
    raise ConfigurationError(f"{ENV[key]}={raw!r}: use on or off")


def _bytes(key: str, default: int) -> int:
    raw = _env(key)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise ConfigurationError(f"{ENV[key]}={raw!r}: use a whole number of bytes")
    return int(raw)
