"""Every failure of the HTTP API as an RFC 9457 problem document.

Contract: a refused or failed request gets ``application/problem+json`` with ``type`` (a
``urn:conveyor:problem:<slug>`` URI, stable, listed in docs/api.md), ``title`` (the same for
every problem of that type), ``status``, ``detail`` (what went wrong in this request, for
the person who must act on it) and, for validation failures, ``errors``: one entry per
field, with ``location`` (``path``, ``query`` or ``body``), ``field`` (the parameter, or a
JSON pointer into the body) and ``detail``.

:func:`problem_for` maps Conveyor's errors to statuses (the table is ``STATUSES``); bad input
is always a 4xx. Anything unexpected is a 500 whose body says only that it failed and gives
an ``error_id``; the exception is logged once, as one record of the ``conveyor.api`` logger
carrying that id, the method and the path. A database that cannot be reached, or that refuses
for now (a full disk, a serialization failure, a statement timeout: any
``psycopg.OperationalError``), is a 503 whose detail says which, with the SQLSTATE.
Every problem answered is counted by type (``COUNTS``, on ``/metrics``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg_pool
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.responses import Response

from ..db.errors import describe
from ..errors import (
    ArgumentsError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    ConveyorError,
    ForbiddenError,
    InvalidOptionError,
    JobCancelled,
    JobFailed,
    JobStateError,
    NotFoundError,
    UnknownQueueError,
    UnknownTaskError,
)

log = logging.getLogger("conveyor.api")

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:conveyor:problem:"


@dataclass(frozen=True)
class Kind:
    """A type of problem: its slug (the end of its ``type`` URI), status and title."""

    slug: str
    status: int
    title: str

    @property
    def type(self) -> str:
        return TYPE_PREFIX + self.slug


BAD_REQUEST = Kind("bad-request", 400, "Bad request")
MALFORMED_JSON = Kind("malformed-json", 400, "Malformed JSON")
UNAUTHENTICATED = Kind("unauthenticated", 401, "Authentication required")
FORBIDDEN = Kind("forbidden", 403, "Forbidden")
NOT_FOUND = Kind("not-found", 404, "Not found")
ROUTE_NOT_FOUND = Kind("no-such-endpoint", 404, "No such endpoint")
METHOD_NOT_ALLOWED = Kind("method-not-allowed", 405, "Method not allowed")
CONFLICT = Kind("conflict", 409, "Conflict")
JOB_STATE = Kind("job-state", 409, "Not allowed in the job's state")
JOB_FAILED = Kind("job-failed", 409, "The job failed")
JOB_CANCELLED = Kind("job-cancelled", 409, "The job was cancelled")
BODY_TOO_LARGE = Kind("body-too-large", 413, "Request body too large")
UNSUPPORTED_MEDIA_TYPE = Kind("unsupported-media-type", 415, "Unsupported media type")
VALIDATION = Kind("validation", 422, "Invalid request")
INVALID_OPTION = Kind("invalid-option", 422, "Invalid option")
INVALID_ARGUMENTS = Kind("invalid-arguments", 422, "Arguments do not fit the task")
UNKNOWN_TASK = Kind("unknown-task", 422, "Unknown task")
UNKNOWN_QUEUE = Kind("unknown-queue", 422, "Unknown queue")
TOO_MANY_ATTEMPTS = Kind("too-many-failed-attempts", 429, "Too many failed attempts")
INTERNAL = Kind("internal", 500, "Internal server error")
UNAVAILABLE = Kind("database-unavailable", 503, "Database unavailable")

# Conveyor's errors, most specific first (the first isinstance match wins).
STATUSES: tuple[tuple[type[ConveyorError], Kind], ...] = (
    (AuthenticationError, UNAUTHENTICATED),
    (ForbiddenError, FORBIDDEN),
    (NotFoundError, NOT_FOUND),
    (JobFailed, JOB_FAILED),
    (JobCancelled, JOB_CANCELLED),
    (JobStateError, JOB_STATE),
    (ConflictError, CONFLICT),
    (UnknownTaskError, UNKNOWN_TASK),
    (UnknownQueueError, UNKNOWN_QUEUE),
    (ArgumentsError, INVALID_ARGUMENTS),
    (InvalidOptionError, INVALID_OPTION),
)

# Every kind, for the OpenAPI document and docs/api.md.
KINDS = (
    BAD_REQUEST,
    MALFORMED_JSON,
    UNAUTHENTICATED,
    FORBIDDEN,
    NOT_FOUND,
    ROUTE_NOT_FOUND,
    METHOD_NOT_ALLOWED,
    CONFLICT,
    JOB_STATE,
    JOB_FAILED,
    JOB_CANCELLED,
    BODY_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    VALIDATION,
    INVALID_OPTION,
    INVALID_ARGUMENTS,
    UNKNOWN_TASK,
    UNKNOWN_QUEUE,
    TOO_MANY_ATTEMPTS,
    INTERNAL,
    UNAVAILABLE,
)


@dataclass(frozen=True)
class FieldError:
    """One invalid field: where (``path``, ``query``, ``body``), which, and what is wrong."""

    location: str
    field: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"location": self.location, "field": self.field, "detail": self.detail}


@dataclass
class Problem(Exception):
    """A refusal the API raises itself (besides Conveyor's errors, mapped by problem_for)."""

    kind: Kind
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.detail


def problem_for(exc: ConveyorError, *, missing: tuple[type[ConveyorError], ...] = ()) -> Problem:
    """The problem a Conveyor error makes. ``missing``: errors that mean the resource the
    path names does not exist, for this endpoint (an unknown queue in the path is a 404,
    in a body a 422)."""
    if isinstance(exc, missing):
        return Problem(NOT_FOUND, str(exc))
    kind = next((k for error, k in STATUSES if isinstance(exc, error)), BAD_REQUEST)
    problem = Problem(kind, str(exc))
    if isinstance(exc, AuthenticationError):
        error = "" if exc.reason == "missing" else ', error="invalid_token"'
        problem.headers["WWW-Authenticate"] = f'Bearer realm="conveyor"{error}'
    if isinstance(exc, JobFailed | JobCancelled):
        problem.extra.update(job_id=exc.job_id, error=exc.error)
    return problem


class ProblemCounts(Collector):
    """How many problem documents this process answered, by type (and so by status): the
    ``conveyor_api_problems_total`` counter of ``/metrics``. Process-wide, from the first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Kind, int] = {}
        self.since = time.time()

    def add(self, kind: Kind) -> None:
        with self._lock:
            self._counts[kind] = self._counts.get(kind, 0) + 1

    def count(self, kind: Kind) -> int:
        with self._lock:
            return self._counts.get(kind, 0)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "conveyor_api_problems",
            "Problem documents the HTTP API answered in this process, by type and status.",
            labels=["type", "status"],
            created=self.since,
        )
        with self._lock:
            counts = sorted(self._counts.items(), key=lambda item: item[0].slug)
        for kind, count in counts:
            family.add_metric([kind.slug, str(kind.status)], count, created=self.since)
        yield family


COUNTS = ProblemCounts()


def render(problem: Problem, *, instance: str | None = None) -> Response:
    COUNTS.add(problem.kind)
    body: dict[str, Any] = {
        "type": problem.kind.type,
        "title": problem.kind.title,
        "status": problem.kind.status,
        "detail": problem.detail,
    }
    if instance is not None:
        body["instance"] = instance
    if problem.errors:
        body["errors"] = [error.as_dict() for error in problem.errors]
    body.update(problem.extra)
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str),
        status_code=problem.kind.status,
        headers={**problem.headers, "Cache-Control": "no-store"},
        media_type=MEDIA_TYPE,
    )


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached now (a 503, not a 500)."""
    return isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout)


def unexpected(exc: BaseException, *, method: str, path: str) -> Problem:
    """A failure that is not the caller's: logged once with an id the response gives."""
    error_id = uuid.uuid4().hex[:16]
    if unavailable(exc):
        reason = describe(exc)
        state = exc.sqlstate if isinstance(exc, psycopg.Error) else None
        log.warning(
            "API %s %s: the database could not serve it: %s",
            method,
            path,
            reason,
            extra={
                "event": "api_unavailable",
                "error_id": error_id,
                "method": method,
                "path": path,
                "sqlstate": state,
            },
        )
        extra: dict[str, Any] = {"error_id": error_id}
        if state is None or state.startswith("08"):
            detail = "the database cannot be reached now; try again shortly"
        else:
            # The server answered, with a refusal that passes (a full disk, a conflict, a
            # timeout): say which, so the caller (or its operator) knows what to wait for.
            detail = f"the database could not carry out the request now: {reason}; try again shortly"
            extra["sqlstate"] = state
        return Problem(UNAVAILABLE, detail, headers={"Retry-After": "1"}, extra=extra)
    log.error(
        "API %s %s failed (error %s): %s: %s",
        method,
        path,
        error_id,
        type(exc).__name__,
        _first_line(exc),
        exc_info=not isinstance(exc, ConfigurationError),
        extra={
            "event": "api_error",
            "error_id": error_id,
            "method": method,
            "path": path,
            "error_type": type(exc).__name__,
        },
    )
    return Problem(
        INTERNAL,
        f"the request failed on the server; the server's log has the details under error {error_id}",
        extra={"error_id": error_id},
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
