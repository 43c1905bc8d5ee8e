"""Exceptions Conveyor raises. Each message is written for the person who must act on it."""

from __future__ import annotations


class ConveyorError(Exception):
    """Base class: a request Conveyor refused, with a message that says why."""


class ConfigurationError(ConveyorError):
    """Conveyor is set up wrongly (database URL, schema name, options)."""


class UnknownTaskError(ConveyorError):
    """No task of that name is registered."""


class UnknownQueueError(ConveyorError):
    """The queue does not exist and no task declares it."""


class ArgumentsError(ConveyorError):
    """A job's arguments do not fit its task: wrong names, wrong types, not JSON, too large."""


class InvalidOptionError(ConveyorError):
    """An enqueue or worker option is out of range (priority, attempts, delay, ...)."""


class NotFoundError(ConveyorError):
    """The job (or dead job) asked for does not exist."""


class ConflictError(ConveyorError):
    """The request conflicts with what exists: a name that is taken (a schedule), a unique key
    a live job holds (a dead job that cannot go back)."""


class TaskImportError(ConveyorError):
    """A task module could not be imported."""


class Discard(Exception):
    """Raise in a task to send its job straight to the dead-letter table, without retries:
    for a failure that running it again cannot fix (a record that no longer exists, bad input)."""


# The longest wait RetryIn takes: a year (a date further out is a mistake, not a plan).
MAX_RETRY_IN = 366 * 86400.0


class RetryIn(Exception):
    """Raise in a task to have its job tried again no sooner than ``seconds`` from now (a
    server's ``Retry-After``, a quota that resets at a known time). The attempt counts as
    failed like any other: the next one runs after ``max(seconds, the task's backoff)``, and a
    job out of attempts goes to the dead-letter table. ``reason`` is recorded in its errors.

    ``seconds`` must be a number from 0 to a year; anything else raises ValueError here."""

    def __init__(self, seconds: float, reason: str = "") -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ValueError(f"RetryIn takes a number of seconds, got {type(seconds).__name__}")
        # Written as "not (ok)" so that NaN, which fails every comparison, is refused too.
        if not (0 <= seconds <= MAX_RETRY_IN):
            raise ValueError(f"RetryIn takes 0 to {MAX_RETRY_IN:g} seconds, got {seconds!r}")
        self.seconds = float(seconds)
        self.reason = reason
        what = reason or "the task asked to be tried again later"
        super().__init__(f"{what} (next attempt in {self.seconds:g} s or later)")

    def __reduce__(self) -> tuple[type[RetryIn], tuple[float, str]]:
        return RetryIn, (self.seconds, self.reason)  # made again from its own arguments (pickle, copy)


class JobStateError(ConveyorError):
    """The job is not in a state that allows the operation (cancel a finished job, delete a
    running one, run now a job that waits for another): the message says which state it is in."""


class JobFailed(ConveyorError):
    """The awaited job died (out of attempts, discarded, or its lease ran out on its last
    attempt): ``job_id`` and ``error``, the last entry of its errors (a dict with "error",
    "attempt", "at", "worker" and, for an exception, its "traceback")."""

    def __init__(self, job_id: int, error: dict[str, object] | None) -> None:
        self.job_id = job_id
        self.error = error
        what = (error or {}).get("error") or "no error recorded"
        super().__init__(f"job {job_id} failed: {what}")


class JobCancelled(ConveyorError):
    """The awaited job was cancelled (e.g. the job it was to run after died): ``job_id`` and
    ``error``, the entry saying why."""

    def __init__(self, job_id: int, error: dict[str, object] | None) -> None:
        self.job_id = job_id
        self.error = error
        what = (error or {}).get("error") or "no reason recorded"
        super().__init__(f"job {job_id} was cancelled: {what}")


class AuthenticationError(ConveyorError):
    """No credentials, malformed ones, or a key that is unknown or revoked. ``reason``: one of
    ``missing``, ``malformed``, ``unknown``, ``revoked`` (for logs and counters; the message
    says it in words and never repeats the credentials)."""

    def __init__(self, message: str, reason: str = "unknown") -> None:
        super().__init__(message)
        self.reason = reason


class ForbiddenError(ConveyorError):
    """The caller's role does not allow the operation: the message names the role it needs."""
