"""The Jobs pages' pure logic: reading the list's filters from a query string, redacting named
fields of a job's arguments and result, and the words and times the pages show.

Contract:

- :func:`redact` replaces the value of every mapping key whose name is one of the redacted
  fields (compared case-insensitively), at any depth of dicts and lists, with
  :data:`REDACTED`; it returns a copy and never changes what it is given.
- The redacted fields come from ``create_app(redact=...)``, else from the environment
  variable ``CONVEYOR_DASHBOARD_REDACT`` (names separated by commas), else
  :data:`DEFAULT_REDACT`. An empty variable (or an empty list) redacts nothing.
- :func:`list_query` turns the list's query parameters into the keyword arguments of
  ``ops.jobs.search_jobs``; an empty field is no filter; a value that cannot be one raises
  :class:`InvalidOptionError` saying which field and why. Times from ``datetime-local``
  inputs are read as UTC.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import InvalidOptionError
from ..ops.roles import Role
from ..queue.filters import JOB_STATES, LIVE_STATES

REDACT_ENV = "CONVEYOR_DASHBOARD_REDACT"
DEFAULT_REDACT = ("password", "secret", "token", "api_key", "authorization")
REDACTED = "[redacted]"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200  # rows of one page of the list
EXCERPT = 120  # characters of the last error shown in the list

# The states written out (with a sign, so that no state is told by colour alone).
STATE_LABELS = {
    "available": "Waiting",
    "scheduled": "Scheduled",
    "running": "Running",
    "blocked": "Blocked (waits for another job)",
    "completed": "✓ Completed",
    "cancelled": "⊘ Cancelled",
    "dead": "✗ Dead",
}


# -- redaction ------------------------------------------------------------------------


def redact_fields(names: Iterable[str]) -> frozenset[str]:
    """The field names to redact, lower-cased, blanks left out."""
    if isinstance(names, str):
        names = names.split(",")
    return frozenset(name.strip().lower() for name in names if name.strip())


def redact_fields_from_env(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The fields named by CONVEYOR_DASHBOARD_REDACT, or the defaults when it is not set."""
    raw = (os.environ if environ is None else environ).get(REDACT_ENV)
    return redact_fields(DEFAULT_REDACT if raw is None else raw)


def redact(value: Any, fields: frozenset[str]) -> Any:
    """A copy of ``value`` with the value of every key named in ``fields`` replaced."""
    if not fields:
        return value
    if isinstance(value, Mapping):
        return {
            key: REDACTED if str(key).lower() in fields else redact(item, fields)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item, fields) for item in value]
    return value


def pretty(value: Any) -> str:
    """JSON for a person: indented, non-ASCII as it is, times as ISO 8601."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


# -- the list's filters -----------------------------------------------------------------


@dataclass
class ListQuery:
    """The list's filters as the form shows them (``values``) and as ``search_jobs`` takes them
    (``filters``), the page size, and the cursor."""

    values: dict[str, str] = field(default_factory=dict)
    filters: dict[str, Any] = field(default_factory=dict)
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    def link_params(self, *, cursor: str | None = None) -> dict[str, str]:
        """The query parameters of a link to this list (another page of it with ``cursor``)."""
        params = {name: value for name, value in self.values.items() if value}
        if self.limit != DEFAULT_LIMIT:
            params["limit"] = str(self.limit)
        if cursor is not None:
            params["cursor"] = cursor
        return params


FILTER_FIELDS = ("queue", "state", "task", "key", "q", "enqueued_after", "enqueued_before")


def list_query(params: Mapping[str, str]) -> ListQuery:
    """The filters of the query string; InvalidOptionError for a value that cannot be one."""
    query = ListQuery(values={name: (params.get(name) or "").strip() for name in FILTER_FIELDS})
    values = query.values
    for name in ("queue", "task", "key"):
        if values[name]:
            query.filters[name] = values[name]
    if values["state"]:
        if values["state"] not in JOB_STATES:
            raise InvalidOptionError(
                f"state: unknown state {values['state']!r}; use one of {', '.join(JOB_STATES)}"
            )
        query.filters["state"] = values["state"]
    if values["q"]:
        # Digits: the start of a job id; anything else: a unique key.
        search = values["q"]
        if search.isascii() and search.isdigit():
            query.filters["id_prefix"] = search
        else:
            query.filters["unique_key"] = search
    for name in ("enqueued_after", "enqueued_before"):
        if values[name]:
            query.filters[name] = utc_time(name, values[name])
    raw_limit = (params.get("limit") or "").strip()
    if raw_limit:
        digits = raw_limit.lstrip("0")
        if not raw_limit.isascii() or not raw_limit.isdigit() or not digits:
            raise InvalidOptionError(
                f"limit: a page size is a whole number from 1 to {MAX_LIMIT}, got {raw_limit[:20]!r}"
            )
        # int() refuses over 4,300 digits: any over 9 are more than a page anyway.
        query.limit = min(int(digits) if len(digits) <= 9 else MAX_LIMIT, MAX_LIMIT)
    cursor = (params.get("cursor") or "").strip()
    query.cursor = cursor or None
    return query


def utc_time(name: str, text: str) -> datetime:
    """A ``datetime-local`` value (``2026-12-07T16:30``, seconds optional), read as UTC."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidOptionError(
            f"{name}: {text[:40]!r} is not a date and time (write it as YYYY-MM-DDTHH:MM, in UTC)"
        ) from None
    try:
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except OverflowError:  # an offset pushing it before year 1 or after 9999
        raise InvalidOptionError(f"{name}: {text[:40]!r} is out of the range of dates") from None


# -- what the pages show --------------------------------------------------------------


def state_label(state: str) -> str:
    return STATE_LABELS.get(state, state)


def excerpt(text: str | None, length: int = EXCERPT) -> str:
    """The first line of an error, cut at ``length`` characters."""
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= length else line[: length - 1] + "…"


def when(at: datetime | None) -> str:
    """A time in UTC, to the second."""
    if at is None:
        return "\u2014"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(at: datetime | None, now: datetime) -> timedelta | None:
    return None if at is None else now - at


def is_live(state: str) -> bool:
    return state in LIVE_STATES


# The actions on one job: who may take each, and in which states it is offered. The service
# layer checks the role again and the database the state (a page may be stale).
ACTIONS: dict[str, tuple[Role, tuple[str, ...], str]] = {
    "run-now": (Role.OPERATOR, ("scheduled",), "Run now"),
    "cancel": (Role.OPERATOR, ("available", "scheduled", "blocked"), "Cancel"),
    "abort": (Role.OPERATOR, ("running",), "Abort"),
    "retry": (Role.OPERATOR, ("dead",), "Retry"),
    "delete": (Role.ADMIN, ("available", "scheduled"), "Delete…"),
}


def actions_for(job: Mapping[str, Any], role: Role) -> list[str]:
    """The actions the page offers for ``job`` to a key of ``role``, in ACTIONS' order."""
    offered = []
    for name, (needs, states, _) in ACTIONS.items():
        if role < needs or job["state"] not in states:
            continue
        if name == "delete" and job.get("batch_id") is not None:
            continue  # a batch's job cannot be deleted: cancel it
        offered.append(name)
    return offered


def action_label(name: str) -> str:
    return ACTIONS[name][2]
