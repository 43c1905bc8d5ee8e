"""The event loop long-running processes (worker, scheduler, ``conveyor dev``) run on.

uvloop when it is installed (it is a dependency where it builds: Linux and macOS on
CPython), asyncio's own loop otherwise or when ``CONVEYOR_EVENT_LOOP=asyncio``. A worker
spends much of its time in the loop itself (a task, callbacks and socket reads per job);
uvloop does that work in C.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .errors import ConfigurationError

T = TypeVar("T")

CHOICES = ("auto", "uvloop", "asyncio")


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory for asyncio.Runner, or None for asyncio's default loop."""
    choice = (choice or os.environ.get("CONVEYOR_EVENT_LOOP") or "auto").lower()
    if choice not in CHOICES:
        raise ConfigurationError(f"CONVEYOR_EVENT_LOOP={choice!r}: use one of {', '.join(CHOICES)}")
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise ConfigurationError("CONVEYOR_EVENT_LOOP=uvloop, but uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(coro: Coroutine[Any, Any, T], choice: str | None = None) -> T:
    """Run ``coro`` to completion on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(coro)
