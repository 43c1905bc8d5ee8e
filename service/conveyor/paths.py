"""Where the SQL and migration files are: inside the installed package, or in the checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent.parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / name, _CHECKOUT / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"Conveyor's {name}/ folder is missing from {_PACKAGE}")


def sql_dir() -> Path:
    return _find("sql")


def alembic_dir() -> Path:
    return _find("alembic")
