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
