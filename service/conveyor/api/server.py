"""Serving the API with uvicorn: alone (``conveyor api``, one process or several) or beside a
worker and a scheduler in one event loop (``conveyor dev``).

Contracts:

- :func:`bind` takes the listening socket before anything starts, so a port in use is a
  clear :class:`ConfigurationError`, not a failure halfway through a start.
- :func:`app_from_environment` is the factory every process of ``conveyor api --workers N``
  calls (uvicorn imports it by name in each process it spawns): it reads the database, the
  schema, the task modules, the body limit and the log format from the environment the
  command set, configures logging and makes the app.
- :class:`EmbeddedServer` is a uvicorn server that leaves signals to its host: the host's
  own handlers stop it (``should_exit``), with the worker and the scheduler.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from ..errors import ConfigurationError
from ..logs import configure_logging
from ..settings import API_POOL_SIZE, Settings
from ..tasks import default_registry
from .app import create_app
from .inputs import DEFAULT_BODY_LIMIT

TASKS_ENV = "CONVEYOR_TASKS"
BODY_LIMIT_ENV = "CONVEYOR_API_BODY_LIMIT"
POOL_SIZE_ENV = "CONVEYOR_API_POOL_SIZE"
DEFAULT_POOL_SIZE = API_POOL_SIZE


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); ConfigurationError if it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """The API's root URL for a bound socket (a wildcard address shown as localhost)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def app_from_environment() -> Starlette:
    """The app, configured from the environment (see the module's contract)."""
    configure_logging(fmt=os.environ.get("CONVEYOR_LOG_FORMAT"))
    modules = [m.strip() for m in os.environ.get(TASKS_ENV, "").split(",") if m.strip()]
    default_registry.import_modules(modules)
    settings = Settings.from_env()
    return create_app(
        database_url=settings.database_url,
        schema=settings.schema,
        body_limit=_int_env(BODY_LIMIT_ENV, DEFAULT_BODY_LIMIT),
        pool_size=_int_env(POOL_SIZE_ENV, DEFAULT_POOL_SIZE),
    )


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(f"{name}={raw!r}: use a positive whole number")
    return int(raw)


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that installs no signal handlers: its host stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
