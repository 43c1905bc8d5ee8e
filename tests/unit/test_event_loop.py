"""Which event loop long-running commands use (conveyor.event_loop)."""

from __future__ import annotations

import asyncio

import pytest

from conveyor import event_loop
from conveyor.errors import ConfigurationError

uvloop = pytest.importorskip("uvloop")


async def loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_EVENT_LOOP", raising=False)
    assert event_loop.run(loop_name()) == "uvloop"


def test_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_EVENT_LOOP", "asyncio")
    assert event_loop.run(loop_name()) == "asyncio"


def test_an_unknown_choice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_EVENT_LOOP", "trio")
    with pytest.raises(
        ConfigurationError, match="CONVEYOR_EVENT_LOOP='trio': use one of auto, uvloop, asyncio"
    ):
        event_loop.loop_factory()
