"""Pages of a listing, and the opaque cursors that continue them.

Listings page by keyset, never by OFFSET: each page starts just after the sort key of the
last row of the page before, so a page costs the same wherever it is, and rows added or
moved meanwhile never make a page repeat or skip a row that was there at the start.

A cursor is that sort key, written as URL-safe base64 of a small JSON array: the format
version, the listing it belongs to, and the key (an id, or a time in microseconds since
the epoch and an id). It is opaque to callers: they hand back what they were given. Every
cursor is checked on the way in (size, encoding, shape, listing, ranges); anything else is
:class:`InvalidOptionError`, never a crash. A cursor someone wrote by hand is as good as
one Conveyor wrote: it only names a place in the sort order, so it can show nothing the
filters do not allow. It is not bound to the filters either: a cursor with other filters
gives the rows after that place which match them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import InvalidOptionError

VERSION = 1
MAX_CURSOR = 200  # characters: a real cursor is about 40
MAX_ID = 2**63 - 1
MAX_PAGE = 1000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Microseconds since the epoch that a datetime can hold (years 1 to 9999).
MIN_MICROS = (datetime(1, 1, 2, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
MAX_MICROS = (datetime(9999, 12, 30, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)

# The listings and the sort key each one's cursor holds.
JOBS = "jobs"  # search_jobs: id, descending
HISTORY = "history"  # history: (finished_at, id), descending
DEAD = "dead"  # dead_letters: (died_at, id), descending


@dataclass(frozen=True)
class Page:
    """One page of a listing: its rows, and the cursor of the next page (None: this was the
    last page). Rows are dicts with the same keys on every row."""

    items: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None


@dataclass(frozen=True)
class Position:
    """Where a page starts: strictly after (at, id) in the listing's descending order; ``at``
    is None for a listing sorted by id alone."""

    id: int
    at: datetime | None = None


def check_limit(limit: object, maximum: int = MAX_PAGE) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise InvalidOptionError(f"limit must be 1 to {maximum}, got {limit!r}")
    return limit


def encode(listing: str, position: Position) -> str:
    key: list[Any] = [VERSION, listing]
    if position.at is not None:
        key.append((position.at - EPOCH) // timedelta(microseconds=1))
    key.append(position.id)
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(listing: str, cursor: object) -> Position | None:
    """The position a cursor of ``listing`` names (None for no cursor); InvalidOptionError
    for anything that is not such a cursor."""
    if cursor is None:
        return None
    if not isinstance(cursor, str):
        raise InvalidOptionError(f"a cursor is a string, got {type(cursor).__name__}")
    key = _parse(cursor)
    timed = listing != JOBS
    if (
        len(key) != (4 if timed else 3)
        or not _is_version(key[0])
        or key[1] != listing
        or not all(type(part) is int for part in key[2:])
    ):
        if len(key) >= 2 and _is_version(key[0]) and key[1] in (JOBS, HISTORY, DEAD) and key[1] != listing:
            raise InvalidOptionError(f"this cursor continues the {key[1]} listing, not the {listing} one")
        raise _invalid()
    *_, job_id = key
    if not 1 <= job_id <= MAX_ID:
        raise _invalid()
    if not timed:
        return Position(job_id)
    micros = key[2]
    if not MIN_MICROS <= micros <= MAX_MICROS:
        raise _invalid()
    return Position(job_id, EPOCH + timedelta(microseconds=micros))


def _is_version(part: object) -> bool:
    """The format version written as Conveyor writes it: an int (JSON's true and 1.0 equal 1 in
    Python, but are not how a cursor of this version says so)."""
    return type(part) is int and part == VERSION


def _parse(cursor: str) -> list[Any]:
    if not cursor or len(cursor) > MAX_CURSOR or not cursor.isascii():
        raise _invalid()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _invalid() from None
    if not isinstance(key, list):
        raise _invalid()
    return key


def _invalid() -> InvalidOptionError:
    return InvalidOptionError(
        "the cursor is not valid: pass back the next_cursor of the page before, unchanged"
    )


def page_of(listing: str, rows: Sequence[dict[str, Any]], limit: int, *, time_key: str | None = None) -> Page:
    """The page of the first ``limit`` rows, fetched ``limit + 1`` at a time: a row beyond
    the page means there is a next one, and the page's last row is where it starts."""
    items = list(rows[:limit])
    if len(rows) <= limit:
        return Page(items, None)
    last = items[-1]
    return Page(items, encode(listing, Position(last["id"], None if time_key is None else last[time_key])))
