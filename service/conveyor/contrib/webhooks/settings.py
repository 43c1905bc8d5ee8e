"""How webhooks are sent: secrets by name, which targets are allowed, timeouts, as checked values.

Read from the worker's environment by :meth:`WebhookSettings.from_env`, or set in code with
:func:`configure`. Jobs name a secret (``secret="billing"``); the secret itself stays in the
worker's environment (``CONVEYOR_WEBHOOK_SECRET_BILLING``) or its code, never in the jobs
table, the dashboard or a dead letter. Secrets are kept out of ``repr`` and out of every
message this package writes.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...durations import parse_duration
from ...errors import MAX_RETRY_IN, ConfigurationError, InvalidOptionError
from .signing import MIN_KEY_BYTES, SecretError, decode_secret
from .targets import IPAddress, IPNetwork, TargetPolicy, parse_networks

SECRET_ENV_PREFIX = "CONVEYOR_WEBHOOK_SECRET_"
ENV = {
    "allow_private_targets": "CONVEYOR_WEBHOOK_ALLOW_PRIVATE",
    "timeout": "CONVEYOR_WEBHOOK_TIMEOUT",
    "max_redirects": "CONVEYOR_WEBHOOK_MAX_REDIRECTS",
    "max_retry_after": "CONVEYOR_WEBHOOK_MAX_RETRY_AFTER",
    "user_agent": "CONVEYOR_WEBHOOK_USER_AGENT",
    "ca_file": "CONVEYOR_WEBHOOK_CA_FILE",
}
DEFAULT_TIMEOUT = 15.0  # the spec recommends 15 to 30 s
DEFAULT_MAX_REDIRECTS = 3
DEFAULT_MAX_RETRY_AFTER = 86400.0  # a day: the longest Retry-After honoured
DEFAULT_USER_AGENT = "Conveyor-Webhooks/1"
SECRET_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
_YES = frozenset({"1", "true", "yes", "on"})
_NO = frozenset({"0", "false", "no", "off"})

AllowPrivate = bool | Sequence[str | IPNetwork | IPAddress]


class UnknownSecretError(ConfigurationError):
    """No secret of that name is configured in this worker."""


@dataclass(frozen=True)
class WebhookSettings:
    """What a worker sends webhooks with.

    - ``secrets``: secrets by name, each ``whsec_<base64>`` or several of them (a list, or one
      string with spaces between): every one signs each message, for rotation. Names not
      found here are looked up in the environment, ``CONVEYOR_WEBHOOK_SECRET_<NAME>``
      (upper case). Names: letters, digits and ``_``, case-insensitive.
    - ``allow_private_targets``: False (default: only public addresses), True (anywhere), or
      networks allowed besides the public ones (``["10.1.0.0/16", "127.0.0.1"]``).
    - ``timeout``: seconds one attempt may take, from resolving the host to the response
      read, redirects included.
    - ``max_redirects``: 307/308 redirects followed per attempt (0: none).
    - ``max_retry_after``: the longest ``Retry-After`` honoured; a longer one is cut to it.
    - ``user_agent``; ``ca_file``: a PEM bundle to check servers' certificates against
      instead of the system's.
    """

    secrets: Mapping[str, str | Sequence[str]] = field(default_factory=dict, repr=False)
    allow_private_targets: AllowPrivate = False
    timeout: float = DEFAULT_TIMEOUT
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    user_agent: str = DEFAULT_USER_AGENT
    ca_file: str | None = None
    _keys: Mapping[str, tuple[bytes, ...]] = field(init=False, repr=False, compare=False)
    policy: TargetPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secrets, Mapping):
            raise ConfigurationError("webhook secrets must be a mapping of names to secrets")
        keys = {}
        for name, value in self.secrets.items():
            keys[_check_name(name)] = _parse_keys(value, f"webhook secret {name!r}")
        object.__setattr__(self, "_keys", keys)
        object.__setattr__(self, "policy", _policy(self.allow_private_targets))
        if not _positive(self.timeout):
            raise ConfigurationError(f"webhook timeout {self.timeout!r} must be a positive number of seconds")
        if not _positive(self.max_retry_after) or self.max_retry_after > MAX_RETRY_IN:
            raise ConfigurationError(
                f"webhook max_retry_after {self.max_retry_after!r} must be a positive number of seconds, "
                f"at most {MAX_RETRY_IN:g} (a year)"
            )
        if (
            isinstance(self.max_redirects, bool)
            or not isinstance(self.max_redirects, int)
            or not (0 <= self.max_redirects <= 20)
        ):
            raise ConfigurationError(f"webhook max_redirects {self.max_redirects!r} must be from 0 to 20")
        if not (
            isinstance(self.user_agent, str) and self.user_agent.isascii() and self.user_agent.isprintable()
        ):
            raise ConfigurationError("webhook user agent must be printable ASCII text")
        if not self.user_agent:
            raise ConfigurationError("webhook user agent must not be empty")
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ConfigurationError(f"webhook CA file {self.ca_file!r} does not exist ({ENV['ca_file']})")

    def keys(self, name: str) -> tuple[bytes, ...]:
        """The HMAC keys of the secret ``name``: from the settings, else from the environment.
        UnknownSecretError when it is in neither; ConfigurationError when it is malformed
        (neither message shows any of it)."""
        checked = _check_name(name)
        if checked in self._keys:
            return self._keys[checked]
        variable = SECRET_ENV_PREFIX + checked
        raw = os.environ.get(variable)
        if raw is None or not raw.strip():
            raise UnknownSecretError(
                f"no webhook secret named {name!r} in this worker: set {variable} "
                "(whsec_... ; several, space-separated, while rotating) or configure(secrets=...)"
            )
        return _parse_keys(raw, variable)

    @classmethod
    def from_env(cls) -> WebhookSettings:
        """The settings in the environment (``ENV``; secrets are read when a job needs them)."""
        return cls(
            allow_private_targets=_allow_private(),
            timeout=_seconds("timeout", DEFAULT_TIMEOUT),
            max_redirects=_whole("max_redirects", DEFAULT_MAX_REDIRECTS),
            max_retry_after=_seconds("max_retry_after", DEFAULT_MAX_RETRY_AFTER),
            user_agent=_env("user_agent") or DEFAULT_USER_AGENT,
            ca_file=_env("ca_file"),
        )


_configured: WebhookSettings | None = None


def configure(value: WebhookSettings | None = None, /, **changes: Any) -> WebhookSettings:
    """Send with these settings in this process instead of the environment's:
    ``configure(WebhookSettings(...))``, or ``configure(secrets={...}, timeout=20)`` to change
    fields of the environment's settings. ``configure(None)``: back to the environment."""
    global _configured
    if value is not None and not isinstance(value, WebhookSettings):
        raise ConfigurationError(f"configure() takes WebhookSettings, got {type(value).__name__}")
    if value is None and not changes:
        _configured = None
        return settings()
    try:
        chosen = replace(value if value is not None else WebhookSettings.from_env(), **changes)
    except TypeError as exc:
        raise ConfigurationError(f"configure(): {exc}") from None
    _configured = chosen
    return chosen


def settings() -> WebhookSettings:
    """The settings sends use now: the configured ones, else the environment's (read each
    time, so a worker's environment is all it takes)."""
    return _configured if _configured is not None else WebhookSettings.from_env()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not SECRET_NAME.fullmatch(name):
        raise UnknownSecretError(
            f"webhook secret name {name!r} is not allowed: use 1 to 64 letters, digits and _"
        )
    return name.upper()


def _parse_keys(value: object, where: str) -> tuple[bytes, ...]:
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, Sequence) or isinstance(items, bytes) or not items:
        raise ConfigurationError(f"{where} is empty or not a string of whsec_ secrets")
    keys = []
    for position, item in enumerate(items, 1):
        if not isinstance(item, str) or not item.strip().startswith("whsec_"):
            raise ConfigurationError(f"{where}: secret {position} of {len(items)} does not start with whsec_")
        try:
            keys.append(decode_secret(item, min_bytes=MIN_KEY_BYTES))
        except SecretError as exc:
            raise ConfigurationError(f"{where}: secret {position} of {len(items)}: {exc}") from None
    return tuple(keys)


def _policy(value: AllowPrivate) -> TargetPolicy:
    if isinstance(value, bool):
        return TargetPolicy(allow_all=value)
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigurationError(
            "allow_private_targets must be True, False or a list of networks (['10.0.0.0/8'])"
        )
    try:
        return TargetPolicy(allowed=parse_networks(value))
    except ValueError as exc:
        raise ConfigurationError(f"allow_private_targets: {exc}") from None


def _allow_private() -> AllowPrivate:
    raw = _env("allow_private_targets")
    if raw is None or raw.lower() in _NO:
        return False
    if raw.lower() in _YES:
        return True
    return [part for part in re.split(r"[,\s]+", raw) if part]


def _positive(value: object) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def _env(key: str) -> str | None:
    raw = os.environ.get(ENV[key])
    if raw is None or not raw.strip():
        return None
    return raw.strip()


def _seconds(key: str, default: float) -> float:
    """A duration from the environment: ``20s``, ``2m``, ``1d`` or a bare number of seconds."""
    raw = _env(key)
    if raw is None:
        return default
    try:
        return parse_duration(raw, default_unit="s").total_seconds()
    except InvalidOptionError as exc:
        raise ConfigurationError(f"{ENV[key]}: {exc}") from None


def _whole(key: str, default: int) -> int:
    raw = _env(key)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise ConfigurationError(f"{ENV[key]}={raw!r}: use a whole number")
    return int(raw)
