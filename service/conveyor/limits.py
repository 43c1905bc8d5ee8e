"""A queue's limits as values: rate limits (``20/1m``) and concurrency caps, checked.

Pure: no I/O. The database enforces them (sql/queries/limits.sql); the worker, the client
and the CLI pass them around as :class:`QueueLimits`. Every field None means "no limit".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .durations import parse_duration
from .errors import InvalidOptionError

MAX_RATE = 100_000  # starts per period (the queues table's check)
# A period the claim can compute with (set_queue_limits_v1 refuses the same): a window's
# start minus it and a reopen plus it stay far within PostgreSQL's timestamps.
MIN_PERIOD = timedelta(milliseconds=1)
MAX_PERIOD = timedelta(days=365)
MAX_CONCURRENCY = 1_000_000  # running jobs of a queue (or of a key) at once


@dataclass(frozen=True)
class Rate:
    """At most ``count`` job starts within any span of ``period``."""

    count: int
    period: timedelta

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or not 1 <= self.count <= MAX_RATE:
            raise InvalidOptionError(
                f"a rate limit's count must be between 1 and {MAX_RATE} (got {self.count!r})"
            )
        if not isinstance(self.period, timedelta) or self.period <= timedelta(0):
            raise InvalidOptionError(
                f"a rate limit's period must be a positive duration (got {self.period!r})"
            )
        if not MIN_PERIOD <= self.period <= MAX_PERIOD:
            raise InvalidOptionError(
                f"a rate limit's period must be between 1 millisecond and 365 days (got {self.period})"
            )

    def __str__(self) -> str:
        return f"{self.count}/{_short(self.period)}"


def parse_rate(value: Rate | tuple[int, str | timedelta | float] | str) -> Rate:
    """``"20/1m"``, ``(20, "1m")``, ``(20, timedelta(minutes=1))``, ``(20, 60.0)`` (seconds)."""
    if isinstance(value, Rate):
        return value
    if isinstance(value, str):
        count, sep, period = value.partition("/")
        if (
            not sep
            or not (count.strip().isascii() and count.strip().isdigit())
            or len(count.strip().lstrip("0")) > 18
        ):
            raise InvalidOptionError(
                f"rate {value!r} is not valid: write COUNT/DURATION, like 20/1m or 10/1s"
            )
        return Rate(int(count), parse_duration(period))
    if isinstance(value, tuple) and len(value) == 2:
        number, span = value
        if isinstance(span, str):
            return Rate(number, parse_duration(span))
        if isinstance(span, timedelta):
            return Rate(number, span)
        if isinstance(span, int | float) and not isinstance(span, bool):
            if not (math.isfinite(span) and 0 < span <= MAX_PERIOD.total_seconds()):
                raise InvalidOptionError(
                    f"a rate limit's period must be between 1 millisecond and 365 days (got {span!r} seconds)"
                )
            return Rate(number, timedelta(seconds=span))
    raise InvalidOptionError(f"rate {value!r} is not valid: give (count, duration) or 'COUNT/DURATION'")


def check_cap(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise InvalidOptionError(f"{name} must be a whole number from 1 to {MAX_CONCURRENCY} (got {value!r})")
    return value


@dataclass(frozen=True)
class QueueLimits:
    """A queue's limits: ``rate`` starts per period and ``concurrency`` running at once across
    all workers, and the same for each key inside the queue. None: no limit."""

    rate: Rate | None = None
    concurrency: int | None = None
    key_rate: Rate | None = None
    key_concurrency: int | None = None

    def __post_init__(self) -> None:
        check_cap("concurrency", self.concurrency)
        check_cap("key_concurrency", self.key_concurrency)

    @property
    def limited(self) -> bool:
        return any(v is not None for v in (self.rate, self.concurrency, self.key_rate, self.key_concurrency))

    def params(self) -> dict[str, object]:
        """The arguments of the set_queue_limits query."""
        return {
            "rate_limit": self.rate.count if self.rate else None,
            "rate_period": self.rate.period if self.rate else None,
            "concurrency": self.concurrency,
            "key_rate_limit": self.key_rate.count if self.key_rate else None,
            "key_rate_period": self.key_rate.period if self.key_rate else None,
            "key_concurrency": self.key_concurrency,
        }

    def describe(self) -> str:
        """One line for listings: ``rate 20/1m, concurrency 2, per key: rate 5/1s, concurrency 1``."""
        own = _parts(self.rate, self.concurrency)
        per_key = _parts(self.key_rate, self.key_concurrency)
        text = ", ".join(own)
        if per_key:
            text += ("; " if text else "") + "per key: " + ", ".join(per_key)
        return text or "-"


def limits_of(
    rate: Rate | tuple[int, str | timedelta | float] | str | None = None,
    concurrency: int | None = None,
    key_rate: Rate | tuple[int, str | timedelta | float] | str | None = None,
    key_concurrency: int | None = None,
) -> QueueLimits:
    """QueueLimits from the forms people write (see :func:`parse_rate`)."""
    return QueueLimits(
        rate=None if rate is None else parse_rate(rate),
        concurrency=concurrency,
        key_rate=None if key_rate is None else parse_rate(key_rate),
        key_concurrency=key_concurrency,
    )


def _parts(rate: Rate | None, concurrency: int | None) -> list[str]:
    parts = []
    if rate is not None:
        parts.append(f"rate {rate}")
    if concurrency is not None:
        parts.append(f"concurrency {concurrency}")
    return parts


def _short(period: timedelta) -> str:
    seconds = period.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class LimitsInUse:
    """A limited queue's limits and their use now: why it is (not) draining."""

    queue: str
    limits: QueueLimits
    running: int  # jobs of the queue running now (against ``concurrency``)
    window_starts: int  # starts within the rate period now (against ``rate.count``)
    keys_in_window: int  # keys with a start within their rate period

    def describe_use(self) -> str:
        parts = []
        if self.limits.rate is not None:
            parts.append(f"{self.window_starts}/{self.limits.rate.count} started in window")
        if self.limits.concurrency is not None:
            parts.append(f"{self.running}/{self.limits.concurrency} running")
        else:
            parts.append(f"{self.running} running")
        if self.limits.key_rate is not None:
            parts.append(f"{self.keys_in_window} keys in window")
        return ", ".join(parts)


def limits_in_use(row: Mapping[str, Any]) -> LimitsInUse:
    """A row of the queue_limits query (sql/queries/limits.sql)."""
    return LimitsInUse(
        queue=row["name"],
        limits=QueueLimits(
            rate=None if row["rate_limit"] is None else Rate(row["rate_limit"], row["rate_period"]),
            concurrency=row["concurrency"],
            key_rate=None
            if row["key_rate_limit"] is None
            else Rate(row["key_rate_limit"], row["key_rate_period"]),
            key_concurrency=row["key_concurrency"],
        ),
        running=row["running"],
        window_starts=row["window_starts"],
        keys_in_window=row["keys_in_window"],
    )
