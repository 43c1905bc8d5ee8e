"""The settings a ready task runs with in this process: those given in code, else the
environment's, read at each use (so a test or an operator's change takes effect at once)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Generic, TypeVar

from ..errors import ConfigurationError

S = TypeVar("S")


class ProcessSettings(Generic[S]):
    """One module's settings: ``configure`` sets them, ``current`` reads them."""

    def __init__(self, kind: type[S], from_env: Callable[[], S]) -> None:
        self._kind = kind
        self._from_env = from_env
        self._configured: S | None = None

    def configure(self, settings: S | None = None, /, **changes: Any) -> S:
        """Set this process's settings in place of the environment's: a whole settings object,
        or the environment's with the fields given here changed. ``configure()`` goes back to
        the environment alone. Returns the settings in force."""
        name = self._kind.__name__
        if settings is not None and not isinstance(settings, self._kind):
            raise ConfigurationError(f"configure() takes {name}, got {type(settings).__name__}")
        if settings is not None and changes:
            raise ConfigurationError(f"pass {name} or fields to change, not both")
        if settings is None and changes:
            settings = replace(self._from_env(), **changes)  # type: ignore[type-var]
        self._configured = settings
        return self.current()

    def current(self) -> S:
        """The settings in force: those configured, else the environment's (read now)."""
        return self._configured if self._configured is not None else self._from_env()
