"""Durations as people write them: ``45s``, ``30m``, ``12h``, ``7d``, ``2w`` (and ``1.5h``).

The one parser for every duration Conveyor takes from a person (the CLI's options, and
later the API's). Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from datetime import timedelta

from .errors import InvalidOptionError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*([smhdw]?)\s*")


def parse_duration(text: str, *, default_unit: str | None = None) -> timedelta:
    """``text`` as a timedelta. A bare number is in ``default_unit`` (an option that always
    took seconds keeps taking them); without one, the unit is required."""
    match = _DURATION.fullmatch(text)
    unit = match[2] or default_unit if match else None
    if match is None or unit is None:
        units = "" if default_unit is None else f" (a bare number is in {_NAMES[default_unit]})"
        raise InvalidOptionError(
            f"duration {text!r} is not valid: use a number and a unit, like 45s, 30m, 12h, 7d or 2w{units}"
        )
    try:
        return timedelta(seconds=float(match[1]) * UNITS[unit])
    except OverflowError:
        raise InvalidOptionError(f"duration {text!r} is too long") from None


_NAMES = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
