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


class TaskImportError(ConveyorError):
    """A task module could not be imported."""


class Discard(Exception):
    """Raise in a task to send its job straight to the dead-letter table, without retries:
    for a failure that running it again cannot fix (a record that no longer exists, bad input)."""


class JobStateError(ConveyorError):
    """The job is not in a state that allows the operation (cancel a finished job, delete a
    running one, run now a job that waits for another): the message says which state it is in."""
