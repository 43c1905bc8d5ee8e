"""Roles and who is asking.

Contract: roles are ordered, each including the rights of those below it. A viewer reads;
an operator also enqueues, retries, cancels, aborts, runs now, pauses, resumes and triggers;
an admin also deletes, purges, manages schedules, retention and API keys. The check is made
in the service layer (:func:`require`), so every entry point refuses alike; the Python
client and the CLI act as :data:`LOCAL_ADMIN` (whoever holds the database URL can do all).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import ForbiddenError


class Role(enum.IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            names = ", ".join(r.name.lower() for r in cls)
            raise ValueError(f"unknown role {name!r}: use one of {names}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Principal:
    """Who is asking: an API key (its id and name) or a local caller, and the role it holds."""

    role: Role
    name: str
    key_id: int | None = None


LOCAL_ADMIN = Principal(Role.ADMIN, "local")


def require(principal: Principal, role: Role, operation: str) -> None:
    """Raise :class:`ForbiddenError` unless ``principal`` holds ``role`` or a higher one."""
    if principal.role < role:
        raise ForbiddenError(
            f"{operation} needs the {role.label} role; the key {principal.name!r} is {principal.role.label}"
        )
