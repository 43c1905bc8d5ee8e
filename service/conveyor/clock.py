"""Where time comes from.

Every time-dependent statement reads ``coalesce(%(now)s, now())``: with the default
:class:`DatabaseClock` the database decides what "now" is; tests pass a :class:`FrozenClock`
and move it forward instead of sleeping through backoffs, leases and schedules.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime | None:
        """The time to use, or None to let the database use its own clock."""
        ...


class DatabaseClock:
    """The database's ``now()``: one clock for every process that talks to it."""

    def now(self) -> datetime | None:
        return None


class FrozenClock:
    """A clock that moves only when told to; for tests."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment
